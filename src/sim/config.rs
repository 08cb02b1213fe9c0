//! The receiver's configuration file: where it listens and stores, how it authenticates,
//! the rules of each table, and the faults it injects.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use serde::Deserialize;

use crate::config::http::AuthKind;
use crate::error::AppError;

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSim {
    /// Address to listen on. Default `127.0.0.1:8900`; port 0 takes a free one.
    listen: Option<String>,
    /// The SQLite file of what it accepted. Default `exchange-sim.db` beside the file.
    store: Option<PathBuf>,
    /// Keep every request's records in the request log (what the tests compare). Default
    /// true; a benchmark turns it off, or the log doubles what the receiver writes.
    log_bodies: Option<bool>,
    #[serde(default)]
    auth: RawSimAuth,
    /// Per exchange table: key, version column, rules.
    #[serde(default, rename = "table")]
    tables: Vec<RawSimTable>,
    #[serde(default)]
    faults: RawFaults,
    /// Records the province sends down, served at `GET /down/{table}` page after page.
    #[serde(default)]
    down: Vec<super::down::DownFeed>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSimAuth {
    /// `none` (default), `basic`, `bearer`, `login`, `md5`, `sha1`, `hmac-sha256`, `hmac-sm3`.
    kind: Option<String>,
    app_key: Option<String>,
    /// `${env:..}`/`${file:..}` capable.
    app_secret: Option<String>,
    /// `login`: the lifetime announced with each token. Default `15m`.
    token_ttl: Option<String>,
    /// `login`: a token stops being accepted this long after it was issued, whatever was
    /// announced (an expiry the agent cannot foresee). Default: as announced.
    revoke_after: Option<String>,
    /// `login`: field names of the key and the secret in the login request. Defaults
    /// `app_key`, `app_secret`.
    login_key_field: Option<String>,
    login_secret_field: Option<String>,
    /// `login`: the field of the answer that holds the token. Default `token`.
    token_field: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSimTable {
    /// The exchange table's name, as in the URL.
    name: String,
    /// The column whose newer value wins. Default: none (the last write wins).
    version: Option<String>,
    /// Columns that must not be null or empty: a record without one is rejected.
    #[serde(default)]
    required: Vec<String>,
    /// A request with a rejected record is refused whole (`code` 1) instead of per record.
    #[serde(default)]
    refuse_whole: bool,
    /// Columns checked after the record was taken: a record without one is stored, and its
    /// rejection appears later in the feedback feed (`GET /feedback`).
    #[serde(default)]
    later: Vec<String>,
    /// The key columns, for a SOAP call's CSV payload, whose records do not mark them.
    #[serde(default)]
    key: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFaults {
    /// Share of requests answered 503 before anything is applied (0 to 1).
    error_share: Option<f64>,
    /// Share of requests whose connection drops before anything is applied.
    drop_share: Option<f64>,
    /// Share of requests answered 429 with `Retry-After: 1` before anything is applied.
    busy_share: Option<f64>,
    /// Share of applied batches whose connection drops before the answer.
    drop_after_share: Option<f64>,
    /// Share of requests answered only after `slow`.
    slow_share: Option<f64>,
    /// Default `5s`.
    slow: Option<String>,
    /// After applying this many batches in all, the last one gets no answer at all.
    stall_after_batches: Option<usize>,
    /// Seed of the fault draws, so that a run's faults can be repeated. Default: random.
    seed: Option<u64>,
}

#[derive(Debug)]
pub struct SimAuth {
    pub kind: AuthKind,
    pub app_key: String,
    pub app_secret: String,
    pub token_ttl: Duration,
    pub revoke_after: Option<Duration>,
    pub login_key_field: String,
    pub login_secret_field: String,
    pub token_field: String,
}

#[derive(Debug)]
pub struct SimTable {
    pub version: Option<String>,
    pub required: Vec<String>,
    pub refuse_whole: bool,
    pub later: Vec<String>,
    pub key: Vec<String>,
}

#[derive(Debug, Default)]
pub struct Faults {
    pub error_share: f64,
    pub drop_share: f64,
    pub busy_share: f64,
    pub drop_after_share: f64,
    pub slow_share: f64,
    pub slow: Duration,
    pub stall_after_batches: Option<usize>,
    pub seed: Option<u64>,
}

#[derive(Debug)]
pub struct SimConfig {
    pub listen: SocketAddr,
    pub store: PathBuf,
    pub log_bodies: bool,
    pub auth: SimAuth,
    pub tables: HashMap<String, SimTable>,
    pub faults: Faults,
    /// Batches applied so far, for `stall_after_batches`.
    pub stalled: AtomicUsize,
    pub down: Vec<super::down::DownFeed>,
}

/// Read the receiver's configuration; every problem in one message.
pub fn load(path: &Path) -> Result<SimConfig, AppError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        AppError::Usage(format!("exchange-sim: cannot read {}: {e}", path.display()))
    })?;
    let raw: RawSim = toml::from_str(&text)
        .map_err(|e| AppError::Usage(format!("exchange-sim: {}: {e}", path.display())))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut problems = Vec::new();
    let mut duration = |key: &str, v: Option<&str>, default: Duration| match v {
        None => default,
        Some(s) => humantime::parse_duration(s).unwrap_or_else(|e| {
            problems.push(format!("{key}: `{s}` is not a duration ({e})"));
            default
        }),
    };
    let token_ttl = duration(
        "auth.token_ttl",
        raw.auth.token_ttl.as_deref(),
        Duration::from_secs(900),
    );
    let revoke_after = raw
        .auth
        .revoke_after
        .as_deref()
        .map(|s| duration("auth.revoke_after", Some(s), token_ttl));
    let slow = duration(
        "faults.slow",
        raw.faults.slow.as_deref(),
        Duration::from_secs(5),
    );
    let listen_text = raw.listen.as_deref().unwrap_or("127.0.0.1:8900");
    let listen = listen_text.parse::<SocketAddr>().unwrap_or_else(|_| {
        problems.push(format!(
            "listen: `{listen_text}` is not an address such as 127.0.0.1:8900"
        ));
        SocketAddr::from(([127, 0, 0, 1], 8900))
    });
    let kind = match raw.auth.kind.as_deref().unwrap_or("none") {
        "none" => AuthKind::None,
        "basic" => AuthKind::Basic,
        "bearer" => AuthKind::Bearer,
        "login" => AuthKind::Login,
        "md5" => AuthKind::Md5,
        "sha1" => AuthKind::Sha1,
        "hmac-sha256" => AuthKind::HmacSha256,
        "hmac-sm3" => AuthKind::HmacSm3,
        k => {
            problems.push(format!("auth.kind: `{k}` is not an auth kind"));
            AuthKind::None
        }
    };
    let env = crate::config::secret::process_env;
    let mut secret = |key: &str, v: &Option<String>| match v {
        Some(v) => crate::config::secret::resolve(v, base, env).unwrap_or_else(|e| {
            problems.push(format!("auth.{key}: {e}"));
            String::new()
        }),
        None => String::new(),
    };
    let app_key = secret("app_key", &raw.auth.app_key);
    let app_secret = secret("app_secret", &raw.auth.app_secret);
    let f = &raw.faults;
    for (key, share) in [
        ("error_share", f.error_share),
        ("drop_share", f.drop_share),
        ("busy_share", f.busy_share),
        ("drop_after_share", f.drop_after_share),
        ("slow_share", f.slow_share),
    ] {
        if share.is_some_and(|s| !(0.0..=1.0).contains(&s)) {
            problems.push(format!("faults.{key}: must be between 0 and 1"));
        }
    }
    if !problems.is_empty() {
        return Err(AppError::Usage(format!(
            "exchange-sim: {}: {}",
            path.display(),
            problems.join("; ")
        )));
    }
    Ok(SimConfig {
        listen,
        store: base.join(raw.store.unwrap_or_else(|| "exchange-sim.db".into())),
        log_bodies: raw.log_bodies.unwrap_or(true),
        auth: SimAuth {
            kind,
            app_key,
            app_secret,
            token_ttl,
            revoke_after,
            login_key_field: raw.auth.login_key_field.unwrap_or_else(|| "app_key".into()),
            login_secret_field: raw
                .auth
                .login_secret_field
                .unwrap_or_else(|| "app_secret".into()),
            token_field: raw.auth.token_field.unwrap_or_else(|| "token".into()),
        },
        tables: raw
            .tables
            .into_iter()
            .map(|t| {
                (
                    t.name,
                    SimTable {
                        version: t.version,
                        required: t.required,
                        refuse_whole: t.refuse_whole,
                        later: t.later,
                        key: t.key,
                    },
                )
            })
            .collect(),
        faults: Faults {
            error_share: f.error_share.unwrap_or(0.0),
            drop_share: f.drop_share.unwrap_or(0.0),
            busy_share: f.busy_share.unwrap_or(0.0),
            drop_after_share: f.drop_after_share.unwrap_or(0.0),
            slow_share: f.slow_share.unwrap_or(0.0),
            slow,
            stall_after_batches: f.stall_after_batches,
            seed: f.seed,
        },
        stalled: AtomicUsize::new(0),
        down: raw.down,
    })
}
