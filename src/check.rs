//! `check`: the configuration is valid (it was loaded), both databases answer, and every
//! table, key and column the configuration names exists. Says what is missing, what the
//! exchange would refuse (column types that cannot hold each other, rows of a sample that
//! would be quarantined), and what will hurt the front-end database before it does.

mod index;
mod sample;
mod table;

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::{Config, Direction};
use crate::ctx::{Ends, Sides};
use crate::db::Db;
use crate::error::AppError;
use crate::job::{Plan, prepare};
use crate::sink::Exchange;

/// Rows read from each table by `check --sample` when no number is given.
pub const DEFAULT_SAMPLE: usize = 200;

pub async fn check(cfg: Config, sample: usize) -> Result<(), AppError> {
    println!(
        "{}",
        crate::tc!(
            "check-valid",
            file = cfg.file.display().to_string(),
            n = cfg.tables.len()
        )
    );
    for w in crate::exposure::warnings(&cfg) {
        println!("{}", crate::tc!("check-warning", warning = w));
    }
    let (source, exchange) = connect(&cfg).await?;
    // Whether the source tells its transaction ids (PostgreSQL 13 and later).
    let xids = source.snapshot().await.is_ok_and(|s| s.is_some());
    let sides = Sides::new(source.clone(), exchange.sink.clone(), exchange.db.clone());
    let receipts = crate::sink::database::DatabaseReceipts::at_front(&cfg, &source)
        .unwrap_or_else(|| exchange.receipts.clone());
    let mut bad = 0;
    let mut plans = HashMap::new();
    for spec in &cfg.tables {
        let prepared = match Ends::of(spec, &cfg, &sides) {
            Ok(ends) => prepare(&cfg, ends, spec).await,
            Err(m) => Err(crate::job::JobError::new(
                &spec.name,
                "choosing where it is read",
                m,
            )),
        };
        match prepared {
            Ok(plan) => {
                table::report(&cfg, spec, &plan, xids).await;
                let writes = match spec.direction {
                    Direction::Up => sides.exchange_db.as_deref(),
                    Direction::Down => Some(sides.front.as_ref()),
                };
                sample::report(&cfg, &plan, writes, sample).await;
                plans.insert(plan.name.clone(), plan);
            }
            Err(e) => {
                bad += 1;
                println!(
                    "{}",
                    crate::tc!(
                        "check-table-problem",
                        table = spec.name.as_str(),
                        step = e.step.to_string()
                    )
                );
                for p in e.cause.to_string().split("; ") {
                    println!("  - {p}");
                }
            }
        }
    }
    bad += feedback(&cfg, &source, receipts.as_ref(), &plans).await;
    tokio::join!(source.close(), exchange.sink.close());
    if bad > 0 {
        return Err(AppError::Usage(format!(
            "{bad} problem(s): the configuration does not match the databases (see above)"
        )));
    }
    println!("{}", crate::tc!("check-all-ok"));
    Ok(())
}

/// The feedback loop's own lines; how many are problems.
async fn feedback(
    cfg: &Config,
    source: &Db,
    receipts: &dyn crate::sink::Receipts,
    plans: &HashMap<String, Plan>,
) -> usize {
    let mut bad = 0;
    for (problem, line) in crate::feedback::check(cfg, source, receipts, plans).await {
        if problem {
            bad += 1;
            println!("PROBLEM — {line}");
        } else {
            println!("{line}");
        }
    }
    bad
}

/// Connect to both sides and say how each answered, and how its traffic travels.
async fn connect(cfg: &Config) -> Result<(Arc<Db>, Exchange), AppError> {
    let (source, target) = tokio::join!(
        Db::connect(&cfg.source, "source", false),
        crate::sink::connect(cfg, false)
    );
    match &source {
        Ok(_) => println!(
            "{}",
            crate::tc!(
                "check-connected",
                side = "source",
                what = format!("{}, {}", cfg.source.engine, cfg.source.redacted)
            )
        ),
        Err(e) => println!(
            "{}",
            crate::tc!("check-failed", side = "source", error = e.to_string())
        ),
    }
    match &target {
        Ok(_) => println!(
            "{}",
            crate::tc!(
                "check-connected",
                side = "exchange",
                what = cfg.exchange.describe().to_string()
            )
        ),
        Err(e) => println!(
            "{}",
            crate::tc!("check-failed", side = "exchange", error = e.to_string())
        ),
    }
    let live = [
        source.as_ref().ok(),
        target.as_ref().ok().and_then(|t| t.db.as_deref()),
    ];
    transport(cfg, live).await;
    match (source, target) {
        (Ok(s), Ok(t)) => Ok((Arc::new(s), t)),
        (s, t) => {
            let mut msgs = Vec::new();
            match s {
                Ok(db) => db.close().await,
                Err(e) => msgs.push(e.to_string()),
            }
            match t {
                Ok(x) => x.sink.close().await,
                Err(e) => msgs.push(e.to_string()),
            }
            Err(AppError::Runtime(msgs.join("\n")))
        }
    }
}

/// Whether each database's traffic is encrypted, and a warning where it crosses a network
/// in the clear.
async fn transport(cfg: &Config, live: [Option<&Db>; 2]) {
    let configured =
        std::iter::once(("source", &cfg.source)).chain(cfg.exchange.db().map(|d| ("exchange", d)));
    for ((name, db), connected) in configured.zip(live) {
        let (line, warn) = crate::exposure::transport(db);
        let said = match connected {
            Some(d) => Some(crate::exposure::encrypted(d).await),
            None => None,
        };
        let said = crate::exposure::encrypted_words(said);
        if warn {
            println!(
                "WARNING — {name} {line}; {said}: across a network use sslmode=verify-full (PostgreSQL), ssl-mode=VERIFY_IDENTITY (MySQL) or encrypt=true (SQL Server)"
            );
        } else {
            println!("{name} {line}; {said}");
        }
    }
}
