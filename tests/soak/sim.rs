//! The HTTP exchange: `frontdb-agent exchange-sim` run as a real process on a free loopback
//! port (HMAC-SHA256 signatures checked, a quality rule of its own, a few faults of its own),
//! reached by the agent `ph` only through the soak's third proxy, killed and started again by
//! the `exchange-sim SIGKILL + restart` fault (its SQLite store survives).
//!
//! The sim has no API to list what it holds: the checker reads its store directly
//! (read-only): `records` (one row per table and key, `vals` the record's values as JSON),
//! `batches` (one row per idempotency key applied) and `requests` (every request and what
//! became of it, with the records as they came).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::NaiveDateTime;
use serde_json::Value as Json;
use sqlx::Row;

use crate::receivers::Receipt;
use crate::servers::{free_port, tcp_answers};
use crate::tables::{Extra, Mode, Rec, Table};

/// The secret both ends know (the agent reads it from its environment, the sim too).
pub const SECRET_ENV: &str = "SOAK_SIM_SECRET";
pub const SECRET: &str = "soak-sim-secret-5f3a";
pub const APP_KEY: &str = "230000-SOAK";

/// Share of requests the sim answers 503 itself, and of applied batches whose connection it
/// drops before answering (the agent must send them again under the same id).
const ERROR_SHARE: f64 = 0.03;
const DROP_AFTER_SHARE: f64 = 0.08;

pub struct Sim {
    pub port: u16,
    bin: PathBuf,
    config: PathBuf,
    pub store: PathBuf,
    pub log: PathBuf,
    pid_file: PathBuf,
    child: Mutex<Option<Child>>,
    pub starts: AtomicU64,
}

/// The sim's configuration: every HTTP table with its version column and the rule that
/// `happened` is required (records without it are rejected per record).
fn config_text(port: u16, tables: &[Table]) -> String {
    let mut s = format!(
        "listen = \"127.0.0.1:{port}\"\nstore = \"exchange-sim.db\"\n\n\
         [auth]\nkind = \"hmac-sha256\"\napp_key = \"{APP_KEY}\"\napp_secret = \"${{env:{SECRET_ENV}}}\"\n\n\
         [faults]\nerror_share = {ERROR_SHARE}\ndrop_after_share = {DROP_AFTER_SHARE}\n"
    );
    for t in tables {
        s.push_str(&format!(
            "\n[[table]]\nname = \"{}\"\nversion = \"{}\"\nrequired = [\"happened\"]\n",
            t.name,
            t.mode.time_col().unwrap_or("id")
        ));
    }
    s
}

impl Sim {
    /// Write the configuration and start the sim; it answers on `port` when this returns.
    pub fn start(dir: &Path, bin: &Path, tables: &[Table]) -> Result<Sim> {
        std::fs::create_dir_all(dir)?;
        let port = free_port()?;
        let config = dir.join("sim.toml");
        std::fs::write(&config, config_text(port, tables))?;
        let sim = Sim {
            port,
            bin: bin.to_owned(),
            store: dir.join("exchange-sim.db"),
            log: dir.join("sim.log"),
            pid_file: dir.join("sim.pid"),
            config,
            child: Mutex::new(None),
            starts: AtomicU64::new(0),
        };
        sim.up()?;
        Ok(sim)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Start the process and wait until it accepts connections.
    pub fn up(&self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(&self.bin)
            .arg("exchange-sim")
            .arg("--config")
            .arg(&self.config)
            .env("FRONTDB_LOG", "warn")
            .env(SECRET_ENV, SECRET)
            .env_remove("FRONTDB_CONFIG")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {} exchange-sim", self.bin.display()))?;
        // scripts/soak.sh kills it by this file if the harness itself is killed.
        let _ = std::fs::write(&self.pid_file, child.id().to_string());
        *self.lock() = Some(child);
        self.starts.fetch_add(1, Ordering::SeqCst);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if tcp_answers(self.port) {
                return Ok(());
            }
            if let Some(st) = self
                .lock()
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!(
                    "exchange-sim exited while starting ({st}): {}",
                    self.tail(20)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!(
            "exchange-sim did not listen on {} within 30s: {}",
            self.port,
            self.tail(20)
        )
    }

    /// SIGKILL, and wait for it to be gone.
    pub fn kill(&self) -> Result<()> {
        let mut g = self.lock();
        let Some(mut child) = g.take() else {
            bail!("exchange-sim is not running")
        };
        child.kill().context("SIGKILL of exchange-sim")?;
        child.wait()?;
        Ok(())
    }

    /// Whether it exited by itself (it is then forgotten): its status.
    pub fn exited(&self) -> Option<std::process::ExitStatus> {
        let mut g = self.lock();
        let st = g.as_mut().and_then(|c| c.try_wait().ok().flatten());
        if st.is_some() {
            *g = None;
        }
        st
    }

    /// At cleanup: gone, whatever its state.
    pub fn stop(&self) {
        if let Some(mut c) = self.lock().take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(&self.pid_file);
    }

    pub fn tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    async fn connect(&self) -> Result<sqlx::SqliteConnection> {
        let opts = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&self.store)
            .read_only(true)
            .busy_timeout(Duration::from_secs(10));
        sqlx::ConnectOptions::connect(&opts)
            .await
            .with_context(|| format!("opening the sim's store {}", self.store.display()))
    }

    /// The records the sim holds for `t`, typed as the checker compares them.
    pub async fn read(&self, t: &Table) -> Result<Vec<(Rec, Extra)>> {
        let mut c = self.connect().await?;
        let rows = sqlx::query("SELECT rkey, version, vals FROM records WHERE tbl = ?")
            .bind(&t.name)
            .fetch_all(&mut c)
            .await?;
        let _ = sqlx::Connection::close(c).await;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let rkey: String = r.try_get(0)?;
            let version: Option<String> = r.try_get(1)?;
            let vals: String = r.try_get(2)?;
            out.push(decode(t, &rkey, version.as_deref(), &vals));
        }
        out.sort_by_key(|(r, _)| r.id);
        Ok(out)
    }

    /// Every request the sim logged, in order.
    pub async fn requests(&self) -> Result<Vec<Request>> {
        let mut c = self.connect().await?;
        let rows = sqlx::query("SELECT batch, tbl, outcome, body FROM requests ORDER BY seq")
            .fetch_all(&mut c)
            .await?;
        let _ = sqlx::Connection::close(c).await;
        rows.iter()
            .map(|r| {
                Ok(Request {
                    batch: r.try_get(0)?,
                    table: r.try_get(1)?,
                    outcome: r.try_get(2)?,
                    body: r.try_get(3)?,
                })
            })
            .collect()
    }

    /// The batches table: (id, table, records applied, records the answer rejected).
    pub async fn batches(&self) -> Result<Vec<(String, String, i64, i64)>> {
        let mut c = self.connect().await?;
        let rows = sqlx::query("SELECT id, tbl, records, answer FROM batches")
            .fetch_all(&mut c)
            .await?;
        let _ = sqlx::Connection::close(c).await;
        rows.iter()
            .map(|r| {
                let answer: String = r.try_get(3)?;
                let rejected = serde_json::from_str::<Json>(&answer)
                    .ok()
                    .and_then(|a| a.get("rejected").and_then(Json::as_array).map(Vec::len))
                    .unwrap_or(0) as i64;
                Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, rejected))
            })
            .collect()
    }
}

/// One request as the sim logged it.
#[derive(Clone, Debug)]
pub struct Request {
    pub batch: Option<String>,
    pub table: Option<String>,
    pub outcome: String,
    /// The records as they came (JSON array), for requests that reached the batch step.
    pub body: Option<String>,
}

/// The requests that carried a batch id, as receipts for `receivers::applied_twice` and
/// `receivers::id_reused`: applied (`applied`, `applied, stalled`) or answered from memory
/// (`replayed`). A SOAP table's records are compared as text: the same batch sent again after
/// a reload may come as XML (every value text) where it first came as JSON.
pub fn receipts(reqs: &[Request]) -> Vec<Receipt> {
    reqs.iter()
        .filter_map(|r| {
            let id = r.batch.clone()?;
            let applied = r.outcome.starts_with("applied");
            let table = r.table.as_deref().unwrap_or("");
            let body = r.body.clone().unwrap_or_default();
            let content = if crate::tables::is_soap_table(table) {
                serde_json::from_str::<Json>(&body).map_or(body, |j| as_text(j).to_string())
            } else {
                body
            };
            (applied || r.outcome == "replayed").then(|| Receipt {
                batch_id: format!("{table}/{id}"),
                content,
                applied,
            })
        })
        .collect()
}

/// Every number as the text of its digits, as an XML payload carries it.
fn as_text(j: Json) -> Json {
    match j {
        Json::Number(n) => Json::String(n.to_string()),
        Json::Array(a) => Json::Array(a.into_iter().map(as_text).collect()),
        Json::Object(m) => Json::Object(m.into_iter().map(|(k, v)| (k, as_text(v))).collect()),
        other => other,
    }
}

/// A time as the envelope carries it: RFC 3339 with an offset, compared as the instant (UTC,
/// the agents' zone).
fn time_of(v: &Json, col: &str, typing: &mut Vec<String>) -> Option<NaiveDateTime> {
    match v {
        Json::Null => None,
        Json::String(s) => match chrono::DateTime::parse_from_rfc3339(s) {
            Ok(t) => {
                if t.offset().local_minus_utc() != 0 {
                    typing.push(format!("{col} {s:?} is not in the agent's zone (UTC)"));
                }
                Some(t.naive_utc())
            }
            Err(_) => {
                typing.push(format!("{col} {s:?} is not RFC 3339 with an offset"));
                None
            }
        },
        other => {
            typing.push(format!(
                "{col} is {other} (a time travels as an RFC 3339 string)"
            ));
            None
        }
    }
}

fn text_of(v: &Json, col: &str, nullable: bool, typing: &mut Vec<String>) -> Option<String> {
    match v {
        Json::String(s) => Some(s.clone()),
        Json::Null if nullable => None,
        other => {
            typing.push(format!("{col} is {other} (text travels as a JSON string)"));
            Some(format!("<{other}>"))
        }
    }
}

/// A stored record as the checker's `Rec`, with what breaks the envelope's typing (the
/// contract of issue #34: integers as numbers, decimals as strings of their exact digits,
/// times RFC 3339 with the offset, NULL as null; over SOAP with an XML payload an integer is
/// the text of its digits and NULL `xsi:nil`) in `Extra::typing`.
pub fn decode(t: &Table, rkey: &str, version: Option<&str>, vals: &str) -> (Rec, Extra) {
    let mut typing = Vec::new();
    let v: Json = serde_json::from_str(vals).unwrap_or_else(|e| {
        typing.push(format!("the stored values are not JSON ({e})"));
        Json::Null
    });
    let get = |c: &str| v.get(c).cloned().unwrap_or(Json::Null);
    let id = match get("id") {
        Json::Number(n) if n.is_i64() => n.as_i64().unwrap_or_default(),
        // An XML element's text: the integer's digits, nothing else.
        Json::String(s) if t.soap && s.parse::<i64>().is_ok_and(|n| n.to_string() == s) => {
            s.parse().unwrap_or_default()
        }
        other => {
            typing.push(format!(
                "id is {other} (an integer travels as a JSON number)"
            ));
            rkey.parse().unwrap_or(i64::MIN)
        }
    };
    if rkey != id.to_string() {
        typing.push(format!("stored under key {rkey:?}, but its id is {id}"));
    }
    let amount = match get("amount") {
        Json::String(s) => s,
        other => {
            typing.push(format!(
                "amount is {other} (a decimal travels as a string of its exact digits)"
            ));
            format!("<{other}>")
        }
    };
    let mut expected = vec!["id", "name", "code", "amount", "happened", "note"];
    let time = t.mode.time_col().and_then(|c| {
        expected.push(c);
        time_of(&get(c), c, &mut typing)
    });
    // The sim keeps the version column's value apart: it must be the record's.
    if let Some(c) = t.mode.time_col()
        && version.and_then(|s| serde_json::from_str::<Json>(s).ok()) != Some(get(c))
    {
        typing.push(format!(
            "the store's version {version:?} is not the record's {c} {}",
            get(c)
        ));
    }
    let op = if matches!(t.mode, Mode::Control { .. }) {
        expected.push("cd_operation");
        text_of(&get("cd_operation"), "cd_operation", false, &mut typing).map(|o| o.to_uppercase())
    } else {
        None
    };
    if let Json::Object(m) = &v {
        let mut have: Vec<&str> = m.keys().map(String::as_str).collect();
        have.sort_unstable();
        let mut want = expected.clone();
        want.sort_unstable();
        if have != want {
            typing.push(format!("columns {have:?}, expected {want:?}"));
        }
    }
    let rec = Rec {
        id,
        name: text_of(&get("name"), "name", false, &mut typing).unwrap_or_default(),
        code: text_of(&get("code"), "code", false, &mut typing).unwrap_or_default(),
        amount,
        happened: time_of(&get("happened"), "happened", &mut typing),
        note: text_of(&get("note"), "note", true, &mut typing),
        time,
        op,
    };
    (
        rec,
        Extra {
            typing,
            ..Extra::default()
        },
    )
}
