//! `check`: the configuration is valid (it was loaded), both databases answer, and every
//! table, key and column the configuration names exists. Says what is missing.

use crate::config::Config;
use crate::ctx::{Ends, Sides};
use crate::db::Db;
use crate::error::AppError;
use crate::job::{Mode, prepare};

pub async fn check(cfg: Config) -> Result<(), AppError> {
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
    let (source, target) = tokio::join!(
        Db::connect(&cfg.source, "source", false),
        crate::sink::connect(&cfg, false)
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
    let (source, exchange) = match (source, target) {
        (Ok(s), Ok(t)) => (std::sync::Arc::new(s), t),
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
            return Err(AppError::Runtime(msgs.join("\n")));
        }
    };
    // Whether the source tells its transaction ids (PostgreSQL 13 and later).
    let xids = source.snapshot().await.is_ok_and(|s| s.is_some());
    let mut bad = 0;
    let mut plans = std::collections::HashMap::new();
    let sides = Sides::new(source.clone(), exchange.sink.clone(), exchange.db.clone());
    let receipts = crate::sink::database::DatabaseReceipts::at_front(&cfg, &source)
        .unwrap_or_else(|| exchange.receipts.clone());
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
                let mode = match plan.mode {
                    Mode::Key => "key",
                    Mode::Timestamp => "timestamp",
                    Mode::Control => "control",
                    Mode::Flag => "flag",
                    Mode::Digest => "digest",
                };
                let (from, to) = match spec.direction {
                    crate::config::Direction::Up => ("", ""),
                    crate::config::Direction::Down => (
                        " (exchange database)",
                        " (front-end database), direction down",
                    ),
                };
                println!(
                    "table {}: OK — {}{from} -> {}{to}, {} watermark, key ({}), {} column(s) exchanged",
                    plan.name,
                    plan.source,
                    plan.target,
                    mode,
                    plan.key_cols()
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    plan.mapping.columns.len()
                );
                if !plan.unexchanged.is_empty() {
                    println!(
                        "  not exchanged (the exchange table has no such column): {}",
                        plan.unexchanged.join(", ")
                    );
                }
                if !plan.rules.is_empty() {
                    println!("  {} quality rule(s)", plan.rules.len());
                }
                let shape = &spec.shape;
                let masked = crate::shape::describe_masks(&shape.masks);
                let filter = shape.scope.as_ref().map(ToString::to_string);
                for n in crate::shape::notes(shape.sharing.as_str(), &masked, filter.as_deref()) {
                    println!("  {n}");
                }
                let lookback = plan.window.as_ref().is_some_and(|w| !w.lookback.is_zero());
                if lookback && plan.row_xids && xids {
                    println!(
                        "  late commits: the lookback window is asked only for rows of transactions \
                         the last re-read could not see (by PostgreSQL transaction id)"
                    );
                } else if lookback {
                    println!(
                        "  late commits: the lookback window is re-read whole and rows already \
                         exchanged are skipped by digest"
                    );
                }
                if plan.tuples.is_some() {
                    println!(
                        "  rows are copied as they are: both tables have the same columns of the same types"
                    );
                }
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
    for (problem, line) in crate::feedback::check(&cfg, &source, receipts.as_ref(), &plans).await {
        if problem {
            bad += 1;
            println!("PROBLEM — {line}");
        } else {
            println!("{line}");
        }
    }
    tokio::join!(source.close(), exchange.sink.close());
    if bad > 0 {
        return Err(AppError::Usage(format!(
            "{bad} problem(s): the configuration does not match the databases (see above)"
        )));
    }
    println!("{}", crate::tc!("check-all-ok"));
    Ok(())
}
