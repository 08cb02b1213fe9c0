//! `report --month 2026-11 [--csv]`: the evidence a department hands in — per table and per
//! day of the month (in the agent's time zone), the exchanges (acknowledged batches), rows,
//! deletes and rejects, and the longest gap between two exchanges against the category's
//! limit. Read from the batch ledger, so it covers what `ledger_retention` keeps.

use std::time::Duration;

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use crate::config::Config;
use crate::error::AppError;
use crate::state::{Exchanged, State};

/// A month as `YYYY-MM`, and its bounds in the agent's zone.
pub fn month_bounds(
    text: &str,
    tz: &Tz,
) -> Result<(NaiveDate, DateTime<Utc>, DateTime<Utc>), String> {
    let bad = || format!("`{text}` is not a month: write YYYY-MM, e.g. 2026-11");
    let first = NaiveDate::parse_from_str(&format!("{text}-01"), "%Y-%m-%d").map_err(|_| bad())?;
    let next = first
        .checked_add_months(chrono::Months::new(1))
        .ok_or_else(bad)?;
    let at = |d: NaiveDate| {
        tz.from_local_datetime(&d.and_time(chrono::NaiveTime::MIN))
            .earliest()
            .map(|t| t.with_timezone(&Utc))
            .ok_or_else(bad)
    };
    Ok((first, at(first)?, at(next)?))
}

/// The longest time without an exchange.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Gap {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub seconds: i64,
    /// `to` is the end of the period (or now), not an exchange: the gap is still open.
    pub open: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Day {
    pub day: String,
    pub exchanges: i64,
    pub rows: i64,
    pub deletes: i64,
    pub rejects: i64,
    /// The longest gap that ends on this day.
    pub longest_gap: Option<Gap>,
}

#[derive(Clone, Debug, Serialize)]
pub struct TableReport {
    pub table: String,
    pub category: Option<String>,
    pub limit_seconds: Option<u64>,
    pub days: Vec<Day>,
    pub total: Day,
    /// Whether the longest gap stays within the limit (none without a category).
    pub within_limit: Option<bool>,
}

/// One table's month from its acknowledged batches (`before`: its last one before the month).
pub fn build(
    table: &str,
    category: Option<&str>,
    batches: &[Exchanged],
    before: Option<DateTime<Utc>>,
    (first, start, end): (NaiveDate, DateTime<Utc>, DateTime<Utc>),
    tz: &Tz,
    now: DateTime<Utc>,
) -> TableReport {
    let stop = end.min(now).max(start);
    let local_day = |t: DateTime<Utc>| t.with_timezone(tz).date_naive();
    let mut days: Vec<Day> = first
        .iter_days()
        .take_while(|d| d.month() == first.month() && (*d <= local_day(stop) || stop == start))
        .map(|d| Day {
            day: d.to_string(),
            ..Day::default()
        })
        .collect();
    let index = |t: DateTime<Utc>| (local_day(t) - first).num_days().max(0) as usize;
    for b in batches {
        if let Some(d) = days.get_mut(index(b.at)) {
            d.exchanges += 1;
            d.rows += b.rows;
            d.deletes += b.deletes;
            d.rejects += b.rejected;
        }
    }
    // Gaps: from the last exchange before the month (else the month's start) to each
    // exchange, and from the last one to the end of the month (or now).
    let mut from = before.unwrap_or(start);
    let mut gaps: Vec<Gap> = Vec::new();
    for b in batches {
        gaps.push(Gap {
            from,
            to: b.at,
            seconds: (b.at - from).num_seconds(),
            open: false,
        });
        from = b.at;
    }
    if stop > from {
        gaps.push(Gap {
            from,
            to: stop,
            seconds: (stop - from).num_seconds(),
            open: true,
        });
    }
    for g in &gaps {
        // A gap that ends at the month's end belongs to its last day.
        let at = if g.open && g.to == end {
            g.to - chrono::Duration::seconds(1)
        } else {
            g.to
        };
        if let Some(d) = days.get_mut(index(at))
            && d.longest_gap.as_ref().is_none_or(|l| l.seconds < g.seconds)
        {
            d.longest_gap = Some(g.clone());
        }
    }
    let mut total = Day {
        day: "total".into(),
        ..Day::default()
    };
    for d in &days {
        total.exchanges += d.exchanges;
        total.rows += d.rows;
        total.deletes += d.deletes;
        total.rejects += d.rejects;
    }
    total.longest_gap = gaps.into_iter().max_by_key(|g| g.seconds);
    let limit = category
        .and_then(crate::schedule::category_minimum)
        .map(|(d, _)| d.as_secs());
    let within_limit = limit.map(|l| {
        total
            .longest_gap
            .as_ref()
            .is_none_or(|g| g.seconds <= l as i64)
    });
    TableReport {
        table: table.to_owned(),
        category: category.map(str::to_owned),
        limit_seconds: limit,
        days,
        total,
        within_limit,
    }
}

/// `report`: the month's report of every configured table, as text or CSV on standard output.
pub async fn report(cfg: &Config, month: &str, csv: bool) -> Result<(), AppError> {
    let tz = cfg.agent.tz;
    let bounds = month_bounds(month, &tz).map_err(AppError::Usage)?;
    if !cfg.agent.state_dir.join("state.db").exists() {
        return Err(AppError::Runtime(format!(
            "no state store in {}: the agent has not exchanged anything yet",
            cfg.agent.state_dir.display()
        )));
    }
    let st = State::open(&cfg.agent.state_dir)
        .await
        .map_err(AppError::runtime)?;
    let now = Utc::now();
    let mut out = Vec::new();
    for spec in &cfg.tables {
        let batches = st
            .exchanged(&spec.name, bounds.1, bounds.2)
            .await
            .map_err(AppError::runtime)?;
        let before = st
            .exchanged_before(&spec.name, bounds.1)
            .await
            .map_err(AppError::runtime)?;
        out.push(build(
            &spec.name,
            spec.category.as_deref(),
            &batches,
            before,
            bounds,
            &tz,
            now,
        ));
    }
    st.close().await;
    if csv {
        print!("{}", to_csv(&out).map_err(AppError::runtime)?);
    } else {
        print_text(cfg, month, &out);
    }
    Ok(())
}

fn gap_words(g: &Gap, tz: &Tz) -> String {
    let at = |t: DateTime<Utc>| t.with_timezone(tz).format("%m-%d %H:%M").to_string();
    format!(
        "{} ({} -> {}{})",
        crate::compliance::words(Duration::from_secs(g.seconds.max(0) as u64)),
        at(g.from),
        at(g.to),
        if g.open { ", still open" } else { "" }
    )
}

fn print_text(cfg: &Config, month: &str, reports: &[TableReport]) {
    let tz = cfg.agent.tz;
    println!(
        "exchange report {month} of agent {} (times in {tz}), from the batch ledger",
        cfg.agent.id
    );
    for r in reports {
        println!();
        match (&r.category, r.limit_seconds) {
            (Some(c), Some(l)) => println!(
                "table {} — category {c}, at least every {}",
                r.table,
                crate::compliance::words(Duration::from_secs(l))
            ),
            _ => println!("table {} — no category", r.table),
        }
        println!(
            "  {:<10}  {:>9}  {:>9}  {:>7}  {:>7}  longest gap",
            "day", "exchanges", "rows", "deletes", "rejects"
        );
        for d in r.days.iter().chain(std::iter::once(&r.total)) {
            println!(
                "  {:<10}  {:>9}  {:>9}  {:>7}  {:>7}  {}",
                d.day,
                d.exchanges,
                d.rows,
                d.deletes,
                d.rejects,
                d.longest_gap
                    .as_ref()
                    .map(|g| gap_words(g, &tz))
                    .unwrap_or_default()
            );
        }
        match r.within_limit {
            Some(true) => println!("  the longest gap stays within the category's limit"),
            Some(false) => println!("  THE LONGEST GAP EXCEEDS THE CATEGORY'S LIMIT"),
            None => {}
        }
    }
}

/// One line per table and day, and one `total` line per table.
pub fn to_csv(reports: &[TableReport]) -> Result<String, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "table",
        "category",
        "day",
        "exchanges",
        "rows",
        "deletes",
        "rejects",
        "longest_gap_seconds",
        "gap_from",
        "gap_to",
        "limit_seconds",
        "within_limit",
    ])?;
    for r in reports {
        for d in r.days.iter().chain(std::iter::once(&r.total)) {
            let gap = d.longest_gap.as_ref();
            let within = match (gap, r.limit_seconds) {
                (Some(g), Some(l)) => (g.seconds <= l as i64).to_string(),
                (None, Some(_)) => "true".into(),
                _ => String::new(),
            };
            w.write_record([
                r.table.clone(),
                r.category.clone().unwrap_or_default(),
                d.day.clone(),
                d.exchanges.to_string(),
                d.rows.to_string(),
                d.deletes.to_string(),
                d.rejects.to_string(),
                gap.map(|g| g.seconds.to_string()).unwrap_or_default(),
                gap.map(|g| crate::state::ts(g.from)).unwrap_or_default(),
                gap.map(|g| crate::state::ts(g.to)).unwrap_or_default(),
                r.limit_seconds.map(|l| l.to_string()).unwrap_or_default(),
                within,
            ])?;
        }
    }
    let bytes = w.into_inner().map_err(|e| e.into_error())?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        crate::state::parse_ts(s).expect("time")
    }

    fn batch(s: &str, rows: i64) -> Exchanged {
        Exchanged {
            at: at(s),
            rows,
            deletes: 1,
            rejected: 2,
        }
    }

    #[test]
    fn days_totals_and_the_longest_gap() {
        let tz: Tz = "Asia/Shanghai".parse().expect("tz");
        let bounds = month_bounds("2026-11", &tz).expect("month");
        assert_eq!(bounds.1, at("2026-10-31T16:00:00Z"));
        assert_eq!(bounds.2, at("2026-11-30T16:00:00Z"));
        let batches = [
            batch("2026-10-31T17:00:00Z", 10), // 11-01 01:00 local
            batch("2026-11-01T03:00:00Z", 5),  // 11-01 11:00
            batch("2026-11-03T05:00:00Z", 7),  // 11-03 13:00: 50 h after the one before
        ];
        let r = build(
            "t",
            Some("supervision_action"),
            &batches,
            Some(at("2026-10-31T01:00:00Z")),
            bounds,
            &tz,
            at("2026-11-03T06:00:00Z"),
        );
        assert_eq!(r.days.len(), 3, "up to today");
        assert_eq!((r.days[0].exchanges, r.days[0].rows), (2, 15));
        assert_eq!((r.days[1].exchanges, r.days[2].exchanges), (0, 1));
        assert_eq!(
            (
                r.total.exchanges,
                r.total.rows,
                r.total.deletes,
                r.total.rejects
            ),
            (3, 22, 3, 6)
        );
        let g = r.total.longest_gap.clone().expect("gap");
        assert_eq!(g.seconds, 50 * 3600);
        assert_eq!(r.days[2].longest_gap.as_ref(), Some(&g));
        assert_eq!(r.within_limit, Some(false));
        let csv = to_csv(&[r]).expect("csv");
        assert!(
            csv.contains("t,supervision_action,2026-11-03,1,7,1,2,180000,"),
            "{csv}"
        );
        assert!(csv.contains(",86400,false\n"), "{csv}");
    }
}
