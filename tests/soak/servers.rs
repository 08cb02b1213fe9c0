//! The soak's own PostgreSQL and MariaDB servers: initialised in the soak's directory, on free
//! ports, restarted fast (a clean shutdown) or immediately (no shutdown at all) on demand. The
//! machine's shared servers (5432, 3306) are never touched.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// A free TCP port on the loopback (bound, read, released).
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("binding a free port")?;
    Ok(l.local_addr()?.port())
}

/// How a server is restarted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restart {
    /// A clean shutdown, then a start.
    Fast,
    /// Killed without a shutdown (PostgreSQL `-m immediate`, MariaDB SIGKILL), then a start.
    Immediate,
}

/// Wait until `ready` answers true, or fail naming `what`.
fn wait_until(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if ready() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("{what} within {timeout:?}")
}

pub fn tcp_answers(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// A PostgreSQL server of its own, run as the `postgres` user (it refuses root).
pub struct Postgres {
    pub port: u16,
    bin: PathBuf,
    data: PathBuf,
    log: PathBuf,
}

fn pg_bin() -> Result<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .context(
            "PostgreSQL server binaries not found under /usr/lib/postgresql (install postgresql)",
        )?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists() && p.join("pg_ctl").exists())
        .collect();
    found.sort();
    found
        .pop()
        .context("no initdb/pg_ctl under /usr/lib/postgresql/*/bin (install postgresql)")
}

fn as_postgres(bin: &Path, tool: &str) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", "postgres", "--"]).arg(bin.join(tool));
    c.current_dir("/");
    c
}

fn run(mut c: Command, what: &str) -> Result<()> {
    let out = c
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("{what}: cannot run {c:?}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

impl Postgres {
    /// initdb in `dir` (made over to the postgres user) and start it.
    pub fn start(dir: &Path) -> Result<Postgres> {
        let bin = pg_bin()?;
        let port = free_port()?;
        std::fs::create_dir_all(dir)?;
        run(
            {
                let mut c = Command::new("chown");
                c.args(["-R", "postgres:postgres"]).arg(dir);
                c
            },
            "giving the PostgreSQL directory to the postgres user",
        )?;
        let data = dir.join("data");
        let log = dir.join("server.log");
        let mut c = as_postgres(&bin, "initdb");
        c.arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-locale",
        ]);
        run(c, "initdb of the soak's PostgreSQL")?;
        let conf = format!(
            "\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             timezone = 'UTC'\nfsync = off\nmax_connections = 200\nlog_min_messages = warning\n",
            dir.display()
        );
        let conf_path = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf_path).context("reading postgresql.conf")?;
        text.push_str(&conf);
        std::fs::write(&conf_path, text).context("writing postgresql.conf")?;
        let pg = Postgres {
            port,
            bin,
            data,
            log,
        };
        pg.up()?;
        Ok(pg)
    }

    fn ctl(&self, args: &[&str]) -> Command {
        let mut c = as_postgres(&self.bin, "pg_ctl");
        c.arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&self.log)
            .args(args);
        c
    }

    /// Start (the data directory exists); wait until it accepts connections.
    pub fn up(&self) -> Result<()> {
        run(
            self.ctl(&["-w", "-t", "60", "start"]),
            "starting the soak's PostgreSQL",
        )
        .with_context(|| format!("see {}", self.log.display()))?;
        wait_until("PostgreSQL did not answer", Duration::from_secs(60), || {
            tcp_answers(self.port)
        })
    }

    /// Stop in the given way, then start again.
    pub fn restart(&self, how: Restart) -> Result<()> {
        let mode = match how {
            Restart::Fast => "fast",
            Restart::Immediate => "immediate",
        };
        run(
            self.ctl(&["-w", "-t", "60", "-m", mode, "stop"]),
            "stopping the soak's PostgreSQL",
        )?;
        self.up()
    }

    pub fn stop(&self) {
        let _ = self
            .ctl(&["-w", "-t", "30", "-m", "fast", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A MariaDB server of its own (`mariadbd --user=root`), a child of the soak.
pub struct MariaDb {
    pub port: u16,
    dir: PathBuf,
    child: std::sync::Mutex<Option<Child>>,
}

impl MariaDb {
    pub fn start(dir: &Path) -> Result<MariaDb> {
        std::fs::create_dir_all(dir)?;
        let port = free_port()?;
        let mut c = Command::new("mariadb-install-db");
        c.arg("--no-defaults")
            .arg(format!("--datadir={}", dir.join("data").display()))
            .args([
                "--user=root",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ]);
        run(
            c,
            "mariadb-install-db for the soak's MariaDB (install mariadb-server)",
        )?;
        let my = MariaDb {
            port,
            dir: dir.to_owned(),
            child: std::sync::Mutex::new(None),
        };
        my.up()?;
        Ok(my)
    }

    pub fn up(&self) -> Result<()> {
        let d = &self.dir;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("server.log"))?;
        let child = Command::new("/usr/sbin/mariadbd")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", d.join("data").display()))
            .arg(format!("--socket={}", d.join("mysqld.sock").display()))
            .arg(format!("--pid-file={}", d.join("mysqld.pid").display()))
            .arg(format!("--port={}", self.port))
            .args([
                "--bind-address=127.0.0.1",
                "--user=root",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=128M",
                "--innodb-flush-log-at-trx-commit=2",
                "--max-connections=300",
                "--character-set-server=utf8mb4",
                "--collation-server=utf8mb4_unicode_ci",
                "--default-time-zone=+00:00",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting /usr/sbin/mariadbd (install mariadb-server)")?;
        *self.child.lock().map_err(|_| anyhow::anyhow!("poisoned"))? = Some(child);
        wait_until(
            "the soak's MariaDB did not answer",
            Duration::from_secs(60),
            || {
                Command::new("mariadb-admin")
                    .args([
                        "-h",
                        "127.0.0.1",
                        "-P",
                        &self.port.to_string(),
                        "-uroot",
                        "ping",
                    ])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            },
        )
        .with_context(|| format!("see {}", d.join("server.log").display()))
    }

    fn down(&self, how: Restart) -> Result<()> {
        let child = self
            .child
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .take();
        let Some(mut child) = child else {
            return Ok(());
        };
        match how {
            Restart::Immediate => {
                child.kill().context("SIGKILL of mariadbd")?;
            }
            Restart::Fast => {
                // SIGTERM is MariaDB's clean shutdown.
                // SAFETY: kill(2) on a child process id we own.
                unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            }
        }
        let start = Instant::now();
        loop {
            if child.try_wait()?.is_some() {
                return Ok(());
            }
            if start.elapsed() > Duration::from_secs(60) {
                child.kill()?;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn restart(&self, how: Restart) -> Result<()> {
        self.down(how)?;
        self.up()
    }

    pub fn stop(&self) {
        let _ = self.down(Restart::Fast);
    }
}
