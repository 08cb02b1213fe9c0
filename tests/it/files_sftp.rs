//! The file exchange's SFTP upload against a real OpenSSH server (Debian's openssh-server,
//! installed by scripts/test.sh), started by the test on a loopback port with its own host
//! key and authorized_keys: the remote directory ends up byte for byte like the local one,
//! and a batch written while the server is down is uploaded under the same name once it
//! is back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::{Agent, Daemon, PgDb, wait_for, which};
use crate::files::{config, delivered};

const SSHD: &str = "/usr/sbin/sshd";

/// An sshd of the test's own.
struct Sshd {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

fn keygen(path: &Path) {
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen (openssh-client) runs");
    assert!(ok.success());
}

impl Sshd {
    async fn start() -> Sshd {
        assert!(
            Path::new(SSHD).exists() && which("sftp").is_ok(),
            "{SSHD} or sftp is missing: install openssh-server and openssh-client \
             (scripts/test.sh does)"
        );
        let dir = tempfile::tempdir().expect("tmp");
        let d = dir.path();
        keygen(&d.join("host_key"));
        keygen(&d.join("client_key"));
        std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys")).expect("copy");
        std::fs::create_dir(d.join("remote")).expect("mkdir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let host_pub = std::fs::read_to_string(d.join("host_key.pub")).expect("pub");
        std::fs::write(
            d.join("known_hosts"),
            format!("[127.0.0.1]:{port} {}", host_pub.trim()),
        )
        .expect("known_hosts");
        std::fs::write(
            d.join("sshd_config"),
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n\
                 AuthorizedKeysFile {d}/authorized_keys\nStrictModes no\nUsePAM no\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 PubkeyAuthentication yes\nPermitRootLogin prohibit-password\n\
                 Subsystem sftp internal-sftp\nLogLevel ERROR\n",
                d = d.display()
            ),
        )
        .expect("sshd_config");
        // sshd run as root wants its privilege separation directory.
        let _ = std::fs::create_dir_all("/run/sshd");
        let mut s = Sshd {
            dir,
            port,
            child: None,
        };
        s.up().await;
        s
    }

    async fn up(&mut self) {
        let child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(self.dir.path().join("sshd_config"))
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::options()
                    .create(true)
                    .append(true)
                    .open(self.dir.path().join("sshd.log"))
                    .expect("sshd.log"),
            ))
            .spawn()
            .expect("start sshd");
        self.child = Some(child);
        let port = self.port;
        wait_for("sshd to listen", Duration::from_secs(20), async || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
        .await;
    }

    fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn remote(&self) -> PathBuf {
        self.dir.path().join("remote")
    }

    fn exchange(&self) -> String {
        let user = String::from_utf8(Command::new("id").arg("-un").output().expect("id").stdout)
            .expect("user");
        let d = self.dir.path().display();
        format!(
            "[exchange.sftp]\nhost = \"127.0.0.1\"\nport = {}\nuser = \"{}\"\n\
             key_file = \"{d}/client_key\"\nknown_hosts = \"{d}/known_hosts\"\n\
             remote_dir = \"{d}/remote\"\ntimeout = \"20s\"\n",
            self.port,
            user.trim()
        )
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.down();
    }
}

/// Every file of a directory and its bytes.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .expect("dir")
        .map(|e| {
            let e = e.expect("e");
            (
                e.file_name().into_string().expect("utf-8"),
                std::fs::read(e.path()).expect("read"),
            )
        })
        .collect()
}

#[tokio::test]
async fn files_are_uploaded_over_sftp_to_a_real_openssh_server() {
    let mut sshd = Sshd::start().await;
    let pg = PgDb::new("files_sftp").await;
    pg.exec("CREATE TABLE s (id int PRIMARY KEY, name text NOT NULL)")
        .await;
    pg.exec("INSERT INTO s SELECT g, '上传' || g FROM generate_series(1, 15) g")
        .await;
    let tables = "[[table]]\nsource = \"s\"\nclass_code = \"C0404\"\n\
                  watermark = { kind = \"key\" }\nbatch_size = 10\nschedule = \"every:1s\"\n";
    let text =
        config(&pg, &sshd.exchange(), tables).replace("[source]", "retry_max = \"1s\"\n\n[source]");
    let agent = Agent::new(&text);
    let out = agent.dir.path().join("out");
    std::fs::create_dir(&out).expect("mkdir");
    agent.ok(&["once"]);
    assert_eq!(delivered(&out, false).len(), 2);
    assert_eq!(
        files(&sshd.remote()),
        files(&out),
        "the server has the same files"
    );

    // The server goes away: the next batch is written here and waits for it.
    sshd.down();
    pg.exec("INSERT INTO s SELECT g, 'later' || g FROM generate_series(16, 20) g")
        .await;
    let daemon = Daemon::start(&agent, &[]);
    wait_for(
        "the third file, here",
        Duration::from_secs(30),
        async || files(&out).len() == 6,
    )
    .await;
    wait_for(
        "a failed upload in the log",
        Duration::from_secs(30),
        async || daemon.log().contains("uploading"),
    )
    .await;
    assert_eq!(
        files(&sshd.remote()).len(),
        4,
        "nothing new on the server yet"
    );
    sshd.up().await;
    wait_for(
        "the upload once the server is back",
        Duration::from_secs(60),
        async || files(&sshd.remote()) == files(&out),
    )
    .await;
    let (code, log) = daemon.stop();
    assert_eq!(code, Some(0), "{log}");
    // Sent again under its name: no other file appeared.
    let local = delivered(&out, false);
    assert_eq!(local.len(), 3);
    assert_eq!(local[2].records.len(), 5);
    assert_eq!(files(&sshd.remote()), files(&out));
    pg.drop().await;
}
