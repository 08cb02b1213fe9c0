//! The workload: concurrent writers on each source database, seeded. Each writer owns the keys
//! `id ≡ w (mod writers)` of every table of its source, so writers never wait on each other's
//! locks. Rows are inserted good or bad (a code the quality rule refuses, or a negative amount
//! the exchange's CHECK refuses); a good row stays good, a bad row is updated bad again or
//! corrected. Updates and inserts stamp their change time right after their transaction began
//! and some commit seconds later (late commits, well within the 2-minute lookback). Control
//! tables get `D` rows, digest tables physical deletes, flag tables `sync_sign = 0` with every
//! change. `key` tables get one writer each, one row per transaction, keys rising.
//!
//! A row whose transaction failed (a server restarted under it) may or may not have committed:
//! the writer never touches it again, so its own record of good, bad and deleted rows stays
//! true; the checker reads the truth from the source anyway.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{NaiveDateTime, TimeDelta, Utc};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use sqlx::AssertSqlSafe;
use tokio_util::sync::CancellationToken;

use crate::tables::{Db, Engine, Mode, Pair, Table};

#[derive(Clone, Debug, Default)]
pub struct TableStats {
    pub inserts: u64,
    pub updates: u64,
    pub deletes: u64,
    pub bad_written: u64,
    pub corrected: u64,
    pub late_commits: u64,
    pub failed_tx: u64,
}

pub type Stats = Arc<Mutex<BTreeMap<String, TableStats>>>;

fn bump(stats: &Stats, table: &str, f: impl FnOnce(&mut TableStats)) {
    if let Ok(mut s) = stats.lock() {
        f(s.entry(table.to_owned()).or_default());
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum St {
    Good,
    Bad,
    Deleted,
    Frozen,
}

#[derive(Clone, Debug)]
enum Bind {
    Int(i64),
    Text(String),
    OptText(Option<String>),
    Ts(NaiveDateTime),
    OptTs(Option<NaiveDateTime>),
}

struct Stmt {
    sql: String,
    binds: Vec<Bind>,
}

/// A row's business values.
struct Vals {
    name: String,
    code: String,
    amount: String,
    happened: Option<NaiveDateTime>,
    note: Option<String>,
}

const NAMES: &[&str] = &[
    "市场监督管理局",
    "食品经营许可",
    "双随机抽查",
    "投诉举报处理",
    "行政处罚决定书",
    "统一社会信用代码",
    "检查结果：合格",
    "餐饮服务（含夜宵）",
    "药品零售",
    "特种设备检验",
];
const ODD: &[&str] = &[
    "O'Brien \"引号\" \\ 反斜杠",
    "tab\there",
    "line1\nline2\r\nline3",
    "emoji 😀 𠀀",
    "  leading and trailing  ",
    "",
];

/// A row's values; `bad` makes it refused. At a database exchange a bad row has a code the
/// rule quarantines or a negative amount the CHECK refuses; at the HTTP exchange (`http`) the
/// negative amount is good (the sim has no such rule, 5 % of its good rows carry one) and the
/// sim's refusal is a NULL `happened` (which a good row there never has). Nothing refuses a
/// row at a file exchange: a bad row there breaks the rule, and 5 % of its good rows carry a
/// negative amount.
fn vals(rng: &mut StdRng, id: i64, bad: bool, t: &Table) -> Vals {
    let (http, file) = (t.http, t.file);
    let letters = b"ABCDEFGHJKLMNPQRTUWXY";
    let mut code = String::new();
    for _ in 0..2 {
        code.push(letters[rng.random_range(0..letters.len())] as char);
    }
    code.push_str(&format!("{:04}", rng.random_range(0..10_000)));
    let mut cents: i64 = rng.random_range(0..10_000_000);
    let mut no_happened = false;
    if bad {
        match rng.random_range(0..3) {
            0 => code = format!("bad-{id}"),
            1 if http => no_happened = true,
            1 if file => code = format!("bad-{id}"),
            1 => cents = -rng.random_range(1..100_000),
            _ => code = code.to_lowercase(),
        }
    } else if (http || file) && rng.random_bool(0.05) {
        cents = -rng.random_range(1..100_000);
    }
    let amount = format!(
        "{}{}.{:02}",
        if cents < 0 { "-" } else { "" },
        cents.abs() / 100,
        cents.abs() % 100
    );
    let happened = (rng.random_bool(0.9) || (http && !bad)).then(|| {
        let base = chrono::NaiveDate::from_ymd_opt(2026, 1, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .unwrap_or_default();
        base + TimeDelta::seconds(rng.random_range(0..31_536_000))
            + TimeDelta::microseconds(rng.random_range(0..1_000_000))
    });
    let name = if rng.random_bool(0.1) {
        format!("{} {id}", ODD[rng.random_range(0..ODD.len())])
    } else {
        format!("{} {id}", NAMES[rng.random_range(0..NAMES.len())])
    };
    let note = rng.random_bool(0.7).then(|| {
        format!(
            "备注 {} #{}",
            NAMES[rng.random_range(0..NAMES.len())],
            rng.random_range(0..1000)
        )
    });
    Vals {
        name,
        code,
        amount,
        happened: happened.filter(|_| !no_happened),
        note,
    }
}

/// Placeholder `i` (1-based) in the engine's syntax.
fn ph(e: Engine, i: usize) -> String {
    match e {
        Engine::Pg => format!("${i}"),
        Engine::My => "?".into(),
    }
}

fn amount_ph(e: Engine, i: usize) -> String {
    match e {
        Engine::Pg => format!("CAST(${i} AS numeric)"),
        Engine::My => "?".into(),
    }
}

fn insert(e: Engine, t: &Table, id: i64, v: Vals, stamp: NaiveDateTime, letter: &str) -> Stmt {
    let mut cols = vec!["id", "name", "code", "amount", "happened", "note"];
    let mut binds = vec![
        Bind::Int(id),
        Bind::Text(v.name),
        Bind::Text(v.code),
        Bind::Text(v.amount),
        Bind::OptTs(v.happened),
        Bind::OptText(v.note),
    ];
    match t.mode {
        Mode::Timestamp | Mode::Flag => {
            cols.push("updated_at");
            binds.push(Bind::Ts(stamp));
        }
        Mode::Control { .. } => {
            cols.extend(["cd_operation", "cd_time"]);
            binds.push(Bind::Text(letter.into()));
            binds.push(Bind::Ts(stamp));
        }
        Mode::Key => {
            cols.push("created_at");
            binds.push(Bind::Ts(stamp));
        }
        Mode::Digest => {}
    }
    let marks: Vec<String> = (1..=cols.len())
        .map(|i| if i == 4 { amount_ph(e, i) } else { ph(e, i) })
        .collect();
    Stmt {
        sql: format!(
            "INSERT INTO {} ({}) VALUES ({})",
            t.name,
            cols.join(", "),
            marks.join(", ")
        ),
        binds,
    }
}

fn update(e: Engine, t: &Table, id: i64, v: Vals, stamp: NaiveDateTime, letter: &str) -> Stmt {
    let mut sets = vec![
        format!("name = {}", ph(e, 1)),
        format!("code = {}", ph(e, 2)),
        format!("amount = {}", amount_ph(e, 3)),
        format!("happened = {}", ph(e, 4)),
        format!("note = {}", ph(e, 5)),
    ];
    let mut binds = vec![
        Bind::Text(v.name),
        Bind::Text(v.code),
        Bind::Text(v.amount),
        Bind::OptTs(v.happened),
        Bind::OptText(v.note),
    ];
    let mut n = 5;
    let mut next = || {
        n += 1;
        ph(e, n)
    };
    match t.mode {
        Mode::Timestamp => {
            sets.push(format!("updated_at = {}", next()));
            binds.push(Bind::Ts(stamp));
        }
        Mode::Flag => {
            sets.push(format!("updated_at = {}", next()));
            binds.push(Bind::Ts(stamp));
            sets.push("sync_sign = 0, sync_error_desc = NULL".into());
        }
        Mode::Control { .. } => {
            sets.push(format!("cd_operation = {}", next()));
            binds.push(Bind::Text(letter.into()));
            sets.push(format!("cd_time = {}", next()));
            binds.push(Bind::Ts(stamp));
        }
        Mode::Key | Mode::Digest => {}
    }
    let w = next();
    binds.push(Bind::Int(id));
    Stmt {
        sql: format!("UPDATE {} SET {} WHERE id = {w}", t.name, sets.join(", ")),
        binds,
    }
}

fn delete(e: Engine, t: &Table, id: i64, stamp: NaiveDateTime, letter: &str) -> Stmt {
    match t.mode {
        Mode::Control { .. } => Stmt {
            sql: format!(
                "UPDATE {} SET cd_operation = {}, cd_time = {} WHERE id = {}",
                t.name,
                ph(e, 1),
                ph(e, 2),
                ph(e, 3)
            ),
            binds: vec![Bind::Text(letter.into()), Bind::Ts(stamp), Bind::Int(id)],
        },
        _ => Stmt {
            sql: format!("DELETE FROM {} WHERE id = {}", t.name, ph(e, 1)),
            binds: vec![Bind::Int(id)],
        },
    }
}

/// Now, at microseconds, rounded up (so a stamp taken after a transaction began is never
/// before the transaction's recorded start).
fn stamp() -> NaiveDateTime {
    let n = Utc::now().naive_utc();
    let us = n.and_utc().timestamp_micros() + 1;
    chrono::DateTime::from_timestamp_micros(us)
        .map(|d| d.naive_utc())
        .unwrap_or(n)
}

macro_rules! bind_all {
    ($q:expr, $binds:expr) => {{
        let mut q = $q;
        for b in $binds {
            q = match b {
                Bind::Int(v) => q.bind(v),
                Bind::Text(v) => q.bind(v),
                Bind::OptText(v) => q.bind(v),
                Bind::Ts(v) => q.bind(v),
                Bind::OptTs(v) => q.bind(v),
            };
        }
        q
    }};
}

/// One transaction: begin, stamp, the statements, hold it open `late`, commit.
async fn transact(
    db: &Db,
    late: Duration,
    build: impl FnOnce(NaiveDateTime) -> Vec<Stmt>,
) -> anyhow::Result<()> {
    match db {
        Db::Pg(p) => {
            let mut tx = p.begin().await?;
            let stmts = build(stamp());
            for s in stmts {
                bind_all!(sqlx::query(AssertSqlSafe(s.sql)), s.binds)
                    .execute(&mut *tx)
                    .await?;
            }
            tokio::time::sleep(late).await;
            tx.commit().await?;
        }
        Db::My(p) => {
            let mut c = p.acquire().await?;
            sqlx::raw_sql("START TRANSACTION WITH CONSISTENT SNAPSHOT")
                .execute(&mut *c)
                .await?;
            let stmts = build(stamp());
            let run = async || -> anyhow::Result<()> {
                for s in stmts {
                    bind_all!(sqlx::query(AssertSqlSafe(s.sql)), s.binds)
                        .execute(&mut *c)
                        .await?;
                }
                tokio::time::sleep(late).await;
                sqlx::raw_sql("COMMIT").execute(&mut *c).await?;
                Ok(())
            };
            if let Err(e) = run().await {
                // The connection may be gone; it must not go back to the pool mid-transaction.
                let _ = c.detach();
                return Err(e);
            }
        }
    }
    Ok(())
}

/// A writer of the general tables (all but `key`) of one source.
pub async fn writer(
    pair: Pair,
    db: Db,
    w: usize,
    writers: usize,
    seed: u64,
    stop: CancellationToken,
    stats: Stats,
) {
    let mut rng = StdRng::seed_from_u64(
        seed ^ (0x9e37_79b9_7f4a_7c15u64.wrapping_mul(w as u64 + 1)) ^ hash(pair.agent),
    );
    let tables: Vec<Table> = pair
        .tables
        .iter()
        .filter(|t| t.mode != Mode::Key)
        .cloned()
        .collect();
    let mut models: HashMap<String, (i64, BTreeMap<i64, St>)> = HashMap::new();
    let e = db.engine();
    while !stop.is_cancelled() {
        let t = &tables[rng.random_range(0..tables.len())];
        let (counter, rows) = models.entry(t.name.clone()).or_default();
        let live: Vec<i64> = rows
            .iter()
            .filter(|(_, s)| matches!(s, St::Good | St::Bad))
            .map(|(k, _)| *k)
            .collect();
        let can_delete = matches!(t.mode, Mode::Control { .. } | Mode::Digest);
        let digest_full = t.mode == Mode::Digest && live.len() > 60;
        let roll: f64 = rng.random();
        let late = if t.mode != Mode::Digest && rng.random_bool(0.12) {
            Duration::from_millis(rng.random_range(500..8000))
        } else {
            Duration::ZERO
        };
        let lower = rng.random_bool(0.3);
        let letter = |l: &str| {
            if lower {
                l.to_lowercase()
            } else {
                l.to_owned()
            }
        };
        // What this transaction does, decided before it runs.
        enum Op {
            Insert(i64, bool),
            Update(i64, bool),
            Delete(i64),
        }
        let mut ops = Vec::new();
        let n_ops = if rng.random_bool(0.2) {
            rng.random_range(2..5)
        } else {
            1
        };
        for _ in 0..n_ops {
            let goods: Vec<i64> = live
                .iter()
                .copied()
                .filter(|k| rows.get(k) == Some(&St::Good))
                .collect();
            if can_delete && (digest_full || roll < 0.12) && !goods.is_empty() {
                let k = goods[rng.random_range(0..goods.len())];
                if !ops
                    .iter()
                    .any(|o| matches!(o, Op::Delete(x) | Op::Update(x, _) if *x == k))
                {
                    ops.push(Op::Delete(k));
                }
            } else if (roll < 0.55 || live.is_empty()) && !digest_full {
                *counter += 1;
                let id = *counter * writers as i64 + w as i64 + 1;
                ops.push(Op::Insert(id, rng.random_bool(0.12)));
            } else if !live.is_empty() {
                let k = live[rng.random_range(0..live.len())];
                if ops.iter().any(
                    |o| matches!(o, Op::Delete(x) | Op::Update(x, _) | Op::Insert(x, _) if *x == k),
                ) {
                    continue;
                }
                // A good row stays good; a bad one is corrected half the time.
                let bad = rows.get(&k) == Some(&St::Bad) && rng.random_bool(0.5);
                ops.push(Op::Update(k, bad));
            }
        }
        if ops.is_empty() {
            continue;
        }
        let mut planned = Vec::new();
        for o in &ops {
            match o {
                Op::Insert(id, bad) => {
                    planned.push((*id, Some(vals(&mut rng, *id, *bad, t)), 'i', *bad))
                }
                Op::Update(id, bad) => {
                    planned.push((*id, Some(vals(&mut rng, *id, *bad, t)), 'u', *bad))
                }
                Op::Delete(id) => planned.push((*id, None, 'd', false)),
            }
        }
        let tbl = t.clone();
        let (li, lu, ld) = (letter("I"), letter("U"), letter("D"));
        let result = transact(&db, late, |now| {
            planned
                .into_iter()
                .map(|(id, v, kind, _)| match (kind, v) {
                    ('i', Some(v)) => insert(e, &tbl, id, v, now, &li),
                    ('u', Some(v)) => update(e, &tbl, id, v, now, &lu),
                    _ => delete(e, &tbl, id, now, &ld),
                })
                .collect()
        })
        .await;
        let ok = result.is_ok();
        for o in &ops {
            let (id, next) = match o {
                Op::Insert(id, bad) | Op::Update(id, bad) => {
                    (*id, if *bad { St::Bad } else { St::Good })
                }
                Op::Delete(id) => (*id, St::Deleted),
            };
            let before = rows.get(&id).copied();
            rows.insert(id, if ok { next } else { St::Frozen });
            if ok {
                bump(&stats, &t.name, |s| {
                    match o {
                        Op::Insert(..) => s.inserts += 1,
                        Op::Update(..) => s.updates += 1,
                        Op::Delete(..) => s.deletes += 1,
                    }
                    if next == St::Bad {
                        s.bad_written += 1;
                    }
                    if before == Some(St::Bad) && next == St::Good {
                        s.corrected += 1;
                    }
                });
            }
        }
        if ok {
            if !late.is_zero() {
                bump(&stats, &t.name, |s| s.late_commits += 1);
            }
            tokio::time::sleep(Duration::from_millis(rng.random_range(5..60))).await;
        } else {
            bump(&stats, &t.name, |s| s.failed_tx += 1);
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

/// The one writer of a `key` table: rows in rising key order, one per transaction.
pub async fn key_writer(t: Table, db: Db, seed: u64, stop: CancellationToken, stats: Stats) {
    let mut rng = StdRng::seed_from_u64(seed ^ hash(&t.name));
    let e = db.engine();
    let mut id = 0i64;
    while !stop.is_cancelled() {
        id += 1;
        let bad = rng.random_bool(0.1);
        let v = vals(&mut rng, id, bad, &t);
        let tbl = t.clone();
        match transact(&db, Duration::ZERO, |now| {
            vec![insert(e, &tbl, id, v, now, "I")]
        })
        .await
        {
            Ok(()) => {
                bump(&stats, &t.name, |s| {
                    s.inserts += 1;
                    s.bad_written += u64::from(bad);
                });
                tokio::time::sleep(Duration::from_millis(rng.random_range(20..120))).await;
            }
            Err(_) => {
                bump(&stats, &t.name, |s| s.failed_tx += 1);
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    }
}

pub fn hash(s: &str) -> u64 {
    // FNV-1a: stable across runs and platforms (a seed must replay the same workload).
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
