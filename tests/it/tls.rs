//! Encrypted transport, live: a PostgreSQL instance of the test's own, with a certificate
//! from a throwaway CA and `hostssl` as its only way in. The agent exchanges a table from it
//! with `sslmode=verify-full`, refuses a server whose certificate another CA signed, is
//! refused without TLS, and `check` says which sessions the servers call encrypted.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Agent, MyDb, PgDb, header};

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("{cmd:?}: {e} (this test needs openssl and PostgreSQL's server: scripts/test.sh installs them)")
    });
    assert!(out.status.success(), "{cmd:?} failed:\n{}", text(&out));
}

/// Debian's PostgreSQL server binaries (`initdb`, `postgres`), the newest version installed.
fn pg_bin() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("initdb").exists() && b.join("postgres").exists())
        .collect();
    found.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name()?.to_str()?.parse::<u32>().ok())
    });
    found.pop().unwrap_or_else(|| {
        panic!(
            "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin (initdb, postgres): \
             this test starts a TLS-only PostgreSQL of its own; `apt-get install postgresql` \
             (scripts/test.sh does)"
        )
    })
}

/// A CA (`<name>-ca.pem`) and a server certificate it signed for 127.0.0.1 and localhost.
pub(crate) fn make_ca(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = dir.join(format!("{name}-ca.key"));
    let ca = dir.join(format!("{name}-ca.pem"));
    let key = dir.join(format!("{name}-server.key"));
    let csr = dir.join(format!("{name}-server.csr"));
    let cert = dir.join(format!("{name}-server.pem"));
    let ext = dir.join(format!("{name}-ext.cnf"));
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write ext");
    let openssl = || Command::new("openssl");
    run(openssl()
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", &format!("/CN=frontdb test CA {name}")])
        .arg("-keyout")
        .arg(&ca_key)
        .arg("-out")
        .arg(&ca));
    run(openssl()
        .args([
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&csr));
    run(openssl()
        .args(["x509", "-req", "-days", "2", "-CAcreateserial"])
        .arg("-in")
        .arg(&csr)
        .arg("-CA")
        .arg(&ca)
        .arg("-CAkey")
        .arg(&ca_key)
        .arg("-extfile")
        .arg(&ext)
        .arg("-out")
        .arg(&cert));
    (ca, cert, key)
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// A PostgreSQL instance of this test's own: TLS on, `hostssl` only (trust), stopped and
/// removed on drop.
struct TlsPg {
    port: u16,
    child: Child,
    bin: PathBuf,
    _dir: tempfile::TempDir,
}

/// Run as the `postgres` OS user when the test runs as root (PostgreSQL refuses root): the
/// server is then this test's own child, so stopping it reaches it (through `runuser` a
/// signal would stop at `runuser`).
fn as_postgres(bin: &Path, prog: &str) -> Command {
    use std::os::unix::process::CommandExt;
    let mut c = Command::new(bin.join(prog));
    if unsafe { libc::geteuid() } == 0 {
        let user = uzers::get_user_by_name("postgres").unwrap_or_else(|| {
            panic!("this test runs as root and there is no `postgres` user to run PostgreSQL as")
        });
        c.uid(user.uid()).gid(user.primary_group_id());
    }
    c
}

impl TlsPg {
    fn start(dir: tempfile::TempDir, cert: &Path, key: &Path) -> TlsPg {
        let bin = pg_bin();
        let root = unsafe { libc::geteuid() } == 0;
        let data = dir.path().join("data");
        let sock = dir.path().join("sock");
        std::fs::create_dir(&sock).expect("socket dir");
        let (srv_cert, srv_key) = (dir.path().join("server.crt"), dir.path().join("server.key"));
        std::fs::copy(cert, &srv_cert).expect("copy cert");
        std::fs::copy(key, &srv_key).expect("copy key");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&srv_key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        if root {
            run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path()));
        }
        run(as_postgres(&bin, "initdb")
            .current_dir(dir.path())
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(&data));
        std::fs::write(
            data.join("pg_hba.conf"),
            "hostssl all all 127.0.0.1/32 trust\nhostssl all all ::1/128 trust\n",
        )
        .expect("write pg_hba.conf");
        let port = free_port();
        let log = dir.path().join("postgres.log");
        let child = as_postgres(&bin, "postgres")
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-h", "127.0.0.1", "-k"])
            .arg(&sock)
            .args(["-c", "ssl=on", "-c", "fsync=off"])
            .arg("-c")
            .arg(format!("ssl_cert_file={}", srv_cert.display()))
            .arg("-c")
            .arg(format!("ssl_key_file={}", srv_key.display()))
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("postgres log"))
            .spawn()
            .expect("start postgres");
        let mut pg = TlsPg {
            port,
            child,
            bin,
            _dir: dir,
        };
        pg.wait_ready(&log);
        pg
    }

    /// Until it accepts connections; a server that stopped, or never answered, fails the
    /// test with its log.
    fn wait_ready(&mut self, log: &Path) {
        let log = |why: String| {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            panic!(
                "the TLS PostgreSQL on port {}: {why}; its log:\n{text}",
                self.port
            )
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ok = Command::new(self.bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-t", "2"])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                log(format!("it stopped ({status})"));
            }
            if Instant::now() >= deadline {
                log("it did not accept connections within 60 s".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn url(&self, db: &str, query: &str) -> String {
        format!("postgres://postgres@localhost:{}/{db}?{query}", self.port)
    }
}

impl Drop for TlsPg {
    fn drop(&mut self) {
        // SIGINT: PostgreSQL's fast shutdown.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let _ = self.child.wait();
    }
}

/// The source server's SQL, over TLS verified by `ca`.
async fn tls_exec(url: &str, sql: &str) {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"));
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&pool)
        .await
        .unwrap_or_else(|e| panic!("{e}\nin SQL:\n{sql}"));
    pool.close().await;
}

const TABLE: &str = "\n[[table]]\nsource = \"people\"\nwatermark = { kind = \"key\" }\n";

#[tokio::test(flavor = "multi_thread")]
async fn verify_full_exchanges_and_a_foreign_ca_or_no_tls_is_refused_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, cert, key) = make_ca(dir.path(), "good");
    let (other_ca, _, _) = make_ca(dir.path(), "other");
    let pg = TlsPg::start(tempfile::tempdir().expect("tempdir"), &cert, &key);
    let verified = |db: &str| {
        pg.url(
            db,
            &format!("sslmode=verify-full&sslrootcert={}", ca.display()),
        )
    };
    tls_exec(&verified("postgres"), "CREATE DATABASE front").await;
    tls_exec(
        &verified("front"),
        "CREATE TABLE people (id int PRIMARY KEY, name text NOT NULL, born date);
         INSERT INTO people VALUES (1, '张三', '1980-01-02'), (2, '李四', NULL),
                                   (3, 'O''Brien', '2001-12-31');",
    )
    .await;
    let exchange = PgDb::new("tls_x").await;
    exchange
        .exec("CREATE TABLE people (id int PRIMARY KEY, name text NOT NULL, born date)")
        .await;

    // verify-full with the right CA: check says both sessions as their servers see them.
    // The test server offers TLS too: the exchange is asked not to use it.
    let plain_exchange = format!("{}?sslmode=disable", exchange.url);
    let agent = Agent::new(&(header(&verified("front"), &plain_exchange) + TABLE));
    let out = agent.ok(&["check"]);
    let src = out
        .lines()
        .find(|l| l.starts_with("source transport"))
        .unwrap_or_else(|| panic!("no source transport line:\n{out}"));
    assert!(src.contains("sslmode=verify-full"), "{out}");
    assert!(src.contains("encrypted: yes"), "{out}");
    let exch = out
        .lines()
        .find(|l| l.starts_with("exchange transport"))
        .unwrap_or_else(|| panic!("no exchange transport line:\n{out}"));
    assert!(exch.contains("encrypted: NO"), "{out}");
    agent.ok(&["once"]);
    let want = vec![
        vec![
            Some("1".into()),
            Some("张三".into()),
            Some("1980-01-02".into()),
        ],
        vec![Some("2".into()), Some("李四".into()), None],
        vec![
            Some("3".into()),
            Some("O'Brien".into()),
            Some("2001-12-31".into()),
        ],
    ];
    let got = exchange
        .rows("SELECT id::text, name, born::text FROM people ORDER BY id")
        .await;
    assert_eq!(got, want, "rows exchanged over verify-full");

    // A certificate another CA signed: refused, naming the certificate problem.
    let foreign = pg.url(
        "front",
        &format!("sslmode=verify-full&sslrootcert={}", other_ca.display()),
    );
    let agent = Agent::new(&(header(&foreign, &exchange.url) + TABLE));
    for verb in ["check", "once"] {
        let out = agent.run(&[verb]);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(1), "{verb}: {t}");
        if verb == "check" {
            assert!(t.contains("encrypted: unknown (not connected)"), "{t}");
        }
        assert!(
            t.contains("cannot connect to the source database"),
            "{verb}: {t}"
        );
        assert!(
            t.contains("the server's TLS certificate is not signed by the CA this agent was given"),
            "{verb}: {t}"
        );
    }

    // No TLS at all against a hostssl-only server: refused, saying so.
    let plain = pg.url("front", "sslmode=disable");
    let agent = Agent::new(&(header(&plain, &exchange.url) + TABLE));
    for verb in ["check", "once"] {
        let out = agent.run(&[verb]);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(1), "{verb}: {t}");
        assert!(
            t.contains("cannot connect to the source database"),
            "{verb}: {t}"
        );
        assert!(
            t.contains("the server accepts only encrypted connections: set sslmode=verify-full"),
            "{verb}: {t}"
        );
    }
    exchange.drop().await;
    drop(pg);
}

#[tokio::test]
async fn check_asks_mariadb_whether_the_session_is_encrypted() {
    let (front, exchange) = (MyDb::new("tls_my_f").await, MyDb::new("tls_my_x").await);
    for db in [&front, &exchange] {
        db.exec("CREATE TABLE people (id int PRIMARY KEY, name varchar(40) NOT NULL)")
            .await;
    }
    let source = format!("{}?ssl-mode=DISABLED", front.url);
    let agent = Agent::new(&(header(&source, &exchange.url) + TABLE));
    let out = agent.ok(&["check"]);
    let src = out
        .lines()
        .find(|l| l.starts_with("source transport"))
        .unwrap_or_else(|| panic!("no source transport line:\n{out}"));
    assert!(src.contains("ssl-mode=disabled"), "{out}");
    assert!(src.contains("encrypted: NO (the server says"), "{out}");
    let exch = out
        .lines()
        .find(|l| l.starts_with("exchange transport"))
        .unwrap_or_else(|| panic!("no exchange transport line:\n{out}"));
    assert!(exch.contains("(the server says"), "{out}");
    front.drop().await;
    exchange.drop().await;
}
