//! `check --sample N`: the first N rows of a table (in key order) read, checked by its rules
//! and converted for the exchange table exactly as a cycle would, then offered to the
//! database written in a transaction that is rolled back (PostgreSQL, MySQL/MariaDB,
//! SQLite; elsewhere only the conversion is checked). Nothing is written and nothing is
//! recorded: each row that would be quarantined or refused is named with its key, the
//! column and the reason.

use chrono::Utc;

use crate::config::Config;
use crate::db::Db;
use crate::db::dialect::{Select, Upsert};
use crate::job::Plan;
use crate::mapping::RowCtx;
use crate::sink::Op;
use crate::value::Value;

/// One row of the sample that would not arrive.
struct Finding {
    key: String,
    column: Option<String>,
    reason: String,
}

/// Print what the sample of `n` rows found: warnings, not problems (a row the exchange
/// would not take is the data's matter, not the configuration's).
pub(super) async fn report(cfg: &Config, plan: &Plan, writes: Option<&Db>, n: usize) {
    if n == 0 || plan.pull.is_some() {
        return;
    }
    let rows = match read(plan, n).await {
        Ok(rows) => rows,
        Err(e) => {
            println!("  WARNING — sample: cannot read rows: {e}");
            return;
        }
    };
    let read = rows.len();
    let (converted, mut findings) = convert(cfg, plan, rows);
    let quarantined = findings.len();
    let asked = match writes {
        Some(db) => ask(plan, db, converted, &mut findings).await,
        None => Ok(false),
    };
    let refused = findings.len() - quarantined;
    let place = plan.ends.sink.place();
    let asked = match asked {
        Ok(true) => {
            format!(", {refused} refused by the {place} (asked in a transaction rolled back)")
        }
        Ok(false) => String::new(),
        Err(e) => format!(" (the {place} could not be asked: {e})"),
    };
    println!("  sample of {read} row(s): {quarantined} would be quarantined{asked}");
    for f in &findings {
        let col = f
            .column
            .as_deref()
            .map(|c| format!(", column {c}"))
            .unwrap_or_default();
        println!("  WARNING — key {}{col}: {}", f.key, f.reason);
    }
}

/// The first `n` rows of the table in key order, within its scope.
async fn read(plan: &Plan, n: usize) -> Result<Vec<crate::db::ReadRow>, crate::db::DbError> {
    let key = plan.key_cols();
    let read = &plan.ends.read;
    let sql = read.dialect().select(&Select {
        table: &plan.source,
        columns: &plan.read_cols,
        conds: plan.scoped(Vec::new()),
        order: &key,
        limit: Some(n),
    });
    Ok(read.fetch(&sql, &plan.read_cols, usize::MAX).await?.0)
}

/// Each row's exchange values as a cycle makes them, with its record key; the rows that
/// would be quarantined (unreadable, failing a rule, not convertible) as findings.
fn convert(
    cfg: &Config,
    plan: &Plan,
    rows: Vec<crate::db::ReadRow>,
) -> (Vec<(String, Vec<Value>)>, Vec<Finding>) {
    let tz = &cfg.agent.tz;
    let now = Utc::now();
    let cd_batch = format!("{}00001", now.format("%Y%m%d"));
    let origin = match (&cfg.agent.region_code, &cfg.agent.department_code) {
        (Some(r), Some(d)) => Some(format!("{r}{d}")),
        _ => None,
    };
    let rc = RowCtx {
        tz,
        exchange_time: now,
        cd_batch: &cd_batch,
        origin: origin.as_deref(),
        lower_ops: cfg.exchange.lower_ops,
        mark: cfg.resync.mark(false),
    };
    let mut ok = Vec::new();
    let mut findings = Vec::new();
    for row in rows {
        let mut values = row.values;
        let key = crate::job::rkey_of(plan, &values);
        if let Some(bad) = row.bad {
            findings.push(Finding {
                key,
                column: None,
                reason: bad,
            });
            continue;
        }
        let failed: Vec<Finding> = plan
            .rules
            .iter()
            .filter_map(|r| r.failure(&values, tz).map(|f| (r, f)))
            .map(|(r, f)| Finding {
                key: key.clone(),
                column: Some(r.column.clone()),
                reason: f,
            })
            .collect();
        if !failed.is_empty() {
            findings.extend(failed);
            continue;
        }
        let op = plan
            .op
            .and_then(|i| Op::parse(&values[i]))
            .unwrap_or(Op::Insert);
        match plan.mapping.row(&mut values, op, &rc) {
            Ok(out) => ok.push((key, out)),
            Err(e) => {
                let (column, reason) = split_column(&e);
                findings.push(Finding {
                    key,
                    column,
                    reason,
                });
            }
        }
    }
    (ok, findings)
}

/// The column a conversion error names (`exchange column NAME: ...` or `exchange column
/// NAME holds ...`), and the error.
fn split_column(e: &str) -> (Option<String>, String) {
    let column = e
        .strip_prefix("exchange column ")
        .and_then(|rest| rest.split([' ', ':']).next())
        .filter(|c| !c.is_empty())
        .map(str::to_owned);
    match (&column, e.split_once(": ")) {
        (Some(c), Some((head, reason))) if head.ends_with(c.as_str()) => {
            (column.clone(), reason.to_owned())
        }
        _ => (column, e.to_owned()),
    }
}

/// Offer the converted rows to the database written, in a transaction rolled back; each
/// refusal becomes a finding. `false` when the engine is not asked.
async fn ask(
    plan: &Plan,
    db: &Db,
    rows: Vec<(String, Vec<Value>)>,
    findings: &mut Vec<Finding>,
) -> Result<bool, crate::db::DbError> {
    let t = &plan.out;
    let text = db.dialect().upsert_values(
        &Upsert {
            table: &t.table,
            columns: &t.columns,
            key: &t.key,
            version: t.version,
        },
        1,
    );
    let (keys, values): (Vec<String>, Vec<Vec<Value>>) = rows.into_iter().unzip();
    let Some(said) = db.try_rows(&text, &values).await? else {
        return Ok(false);
    };
    for (key, said) in keys.into_iter().zip(said) {
        if let Some(reason) = said {
            findings.push(Finding {
                key,
                column: column_named(plan, &reason),
                reason,
            });
        }
    }
    Ok(true)
}

/// The exchange column a database's refusal is about: the one whose name it quotes (or
/// SQLite's `table.column`), else the only one of the type it names (PostgreSQL's "value too long for type character
/// varying(5)").
fn column_named(plan: &Plan, reason: &str) -> Option<String> {
    let cols = &plan.out.columns;
    let quoted = cols.iter().find(|c| {
        let n = c.name.as_str();
        ["\"", "'", "`"]
            .iter()
            .any(|q| reason.contains(&format!("{q}{n}{q}")))
            // SQLite's "NOT NULL constraint failed: item.code".
            || reason.ends_with(&format!(".{n}"))
            || reason.contains(&format!(".{n},"))
    });
    if let Some(c) = quoted {
        return Some(c.name.to_string());
    }
    let typed: Vec<_> = cols
        .iter()
        .filter(|c| reason.contains(&format!("type {}", c.native)))
        .collect();
    match typed.as_slice() {
        [c] => Some(c.name.to_string()),
        _ => None,
    }
}
