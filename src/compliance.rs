//! Whether each table of a data category meets the frequency DB23/T 2835 (7.2.2) sets for it:
//! the latest moment its next successful exchange must happen (the category's limit counted
//! from the last success), and whether the table is on time, at risk or late, since when.
//! Also the schedules that could leave a longer gap than the limit, which the configuration
//! refuses.
//!
//! Pure: the caller hands in what the state store says of the table, and the time.

use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use crate::schedule::{self, Schedule};
use crate::state::{TableState, parse_ts, ts};

/// Where a table stands against its category's limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Standing {
    OnTime,
    /// Less than the margin is left, or the next scheduled run ends after the deadline.
    AtRisk,
    /// The deadline passed without a successful exchange.
    Late,
    /// Never exchanged, and no start of the agent to count from.
    Unknown,
}

impl Standing {
    pub fn as_str(self) -> &'static str {
        match self {
            Standing::OnTime => "on time",
            Standing::AtRisk => "AT RISK",
            Standing::Late => "LATE",
            Standing::Unknown => "unknown",
        }
    }

    /// The value of the `frontdb_compliance_state` gauge.
    pub fn gauge(self) -> f64 {
        match self {
            Standing::OnTime => 0.0,
            Standing::AtRisk => 1.0,
            Standing::Late => 2.0,
            Standing::Unknown => -1.0,
        }
    }
}

/// A table's compliance with its category's frequency.
#[derive(Clone, Debug, Serialize)]
pub struct Compliance {
    pub category: String,
    /// The longest time the standard allows between two exchanges.
    pub limit_seconds: u64,
    pub standing: Standing,
    /// The latest moment the next successful exchange must happen.
    pub deadline: Option<String>,
    /// Seconds until the deadline (negative once it passed).
    pub seconds_left: Option<i64>,
    /// Since when the table is in this standing (on time: since its last success).
    pub since: Option<String>,
    /// Why, in words.
    pub reason: String,
}

/// The compliance of a table of `category` from what the store says of it (`t`), counting
/// from `origin` (the daemon's start) when it never succeeded. `None` without a category.
/// (It takes the category, not the table's configuration, so that the configuration's
/// validation can use [`refusal`] without a circle between the two modules.)
pub fn assess(
    category: Option<&str>,
    t: &TableState,
    origin: Option<DateTime<Utc>>,
    margin: Duration,
    now: DateTime<Utc>,
) -> Option<Compliance> {
    let category = category?;
    let (limit, _) = schedule::category_minimum(category)?;
    let last = t.last_success.as_deref().and_then(parse_ts);
    let mut c = Compliance {
        category: category.to_owned(),
        limit_seconds: limit.as_secs(),
        standing: Standing::Unknown,
        deadline: None,
        seconds_left: None,
        since: None,
        reason: "never exchanged successfully, and the daemon has not run".into(),
    };
    let Some(from) = last.or(origin) else {
        return Some(c);
    };
    let deadline = from + chrono::Duration::from_std(limit).ok()?;
    let margin = chrono::Duration::from_std(margin).ok()?;
    let counted = if last.is_some() {
        "the last successful exchange"
    } else {
        "the daemon's start (never exchanged successfully)"
    };
    c.deadline = Some(ts(deadline));
    c.seconds_left = Some((deadline - now).num_seconds());
    // The next run as scheduled (its jitter already drawn) plus the last cycle's time.
    let projected = t.next_run.as_deref().and_then(parse_ts).map(|n| {
        n + chrono::Duration::milliseconds(t.last_ms.unwrap_or(0).max(0))
            + chrono::Duration::seconds(1)
    });
    let words = |d: chrono::Duration| words(d.to_std().unwrap_or_default());
    if now >= deadline {
        c.standing = Standing::Late;
        c.since = Some(ts(deadline));
        c.reason = format!(
            "no successful exchange for {} since {counted}: the limit is {}",
            words(now - from),
            words(chrono::Duration::from_std(limit).unwrap_or_default())
        );
    } else if now >= deadline - margin {
        c.standing = Standing::AtRisk;
        c.since = Some(ts(deadline - margin));
        c.reason = format!(
            "{} left before the deadline (margin {})",
            words(deadline - now),
            words(margin)
        );
    } else if let Some(p) = projected.filter(|p| *p > deadline) {
        c.standing = Standing::AtRisk;
        c.since = t.last_finished.clone().or_else(|| Some(ts(now)));
        c.reason = format!(
            "the next run, due to end about {}, ends after the deadline",
            ts(p)
        );
    } else {
        c.standing = Standing::OnTime;
        c.since = Some(ts(from));
        c.reason = format!("{} left, counted from {counted}", words(deadline - now));
    }
    Some(c)
}

/// A duration in whole seconds, in words (`1h 30m`).
pub fn words(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

/// The longest time a schedule can leave between two exchanges, and how it comes about.
/// Interval schedules count from the end of a cycle, so two exchanges are the interval plus a
/// cycle's time apart: such a schedule meets a limit only when its interval is shorter.
/// Calendar schedules may start one run on its time and the next up to `jitter` later.
pub fn worst_gap(s: &Schedule, jitter: Duration, tz: &Tz) -> (Duration, bool, String) {
    if s.is_interval() {
        let d = s.max_gap(tz);
        return (
            d,
            true,
            format!(
                "`every:`/`realtime` count from the end of a cycle, so two exchanges are {} plus \
                 the cycle's own time apart",
                words(d)
            ),
        );
    }
    let base = s.max_gap(tz);
    if jitter.is_zero() {
        return (base, false, format!("runs are up to {} apart", words(base)));
    }
    (
        base + jitter,
        false,
        format!(
            "runs are up to {} apart, and with jitter {} one run may start on its time and the \
             next {} later than its own",
            words(base),
            words(jitter),
            words(jitter)
        ),
    )
}

/// Why a schedule cannot meet a category's limit, or `None` when it always does.
pub fn refusal(s: &Schedule, jitter: Duration, limit: Duration, tz: &Tz) -> Option<String> {
    let (gap, from_end, how) = worst_gap(s, jitter, tz);
    let exceeds = if from_end { gap >= limit } else { gap > limit };
    exceeds.then(|| {
        format!(
            "{how}, which can exceed the limit of {} ({}); use a schedule that runs more often{}",
            words(limit),
            schedule::frequency_words(limit),
            if jitter.is_zero() {
                String::new()
            } else {
                ", or a smaller jitter".to_owned()
            }
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tz() -> Tz {
        chrono_tz::UTC
    }

    fn sched(s: &str) -> Schedule {
        Schedule::parse(s).expect("schedule")
    }

    const H: u64 = 3600;

    #[test]
    fn daily_with_jitter_can_exceed_a_day() {
        let day = Duration::from_secs(24 * H);
        assert_eq!(refusal(&sched("daily"), Duration::ZERO, day, &tz()), None);
        let why =
            refusal(&sched("daily@01:00"), Duration::from_secs(H), day, &tz()).expect("refused");
        assert!(why.contains("jitter 1h"), "{why}");
        assert!(why.contains("limit of 1day"), "{why}");
        assert_eq!(
            refusal(&sched("hourly"), Duration::from_secs(H), day, &tz()),
            None
        );
    }

    #[test]
    fn an_interval_counts_from_the_end_of_a_cycle() {
        let day = Duration::from_secs(24 * H);
        let why = refusal(&sched("every:24h"), Duration::ZERO, day, &tz()).expect("refused");
        assert!(why.contains("end of a cycle"), "{why}");
        assert_eq!(
            refusal(&sched("every:23h"), Duration::ZERO, day, &tz()),
            None
        );
        // Jitter does not apply to intervals.
        assert_eq!(
            refusal(&sched("every:1h"), Duration::from_secs(30 * H), day, &tz()),
            None
        );
    }

    fn at(s: &str) -> DateTime<Utc> {
        parse_ts(s).expect("time")
    }

    #[test]
    fn on_time_then_at_risk_then_late() {
        let spec = Some("supervision_action");
        let t = TableState {
            last_success: Some("2026-11-01T00:00:00Z".into()),
            ..TableState::default()
        };
        let margin = Duration::from_secs(2 * H);
        let c = assess(spec, &t, None, margin, at("2026-11-01T12:00:00Z")).expect("c");
        assert_eq!(c.standing, Standing::OnTime);
        assert_eq!(c.deadline.as_deref(), Some("2026-11-02T00:00:00.000000Z"));
        assert_eq!(c.seconds_left, Some(12 * H as i64));
        let c = assess(spec, &t, None, margin, at("2026-11-01T23:00:00Z")).expect("c");
        assert_eq!(c.standing, Standing::AtRisk);
        assert_eq!(c.since.as_deref(), Some("2026-11-01T22:00:00.000000Z"));
        let c = assess(spec, &t, None, margin, at("2026-11-02T03:00:00Z")).expect("c");
        assert_eq!(c.standing, Standing::Late);
        assert_eq!(c.since.as_deref(), Some("2026-11-02T00:00:00.000000Z"));
        assert!(c.reason.contains("1day 3h"), "{}", c.reason);
        // A next run that ends after the deadline is a risk before the margin is reached.
        let late_run = TableState {
            next_run: Some("2026-11-02T00:30:00Z".into()),
            ..t.clone()
        };
        let c = assess(spec, &late_run, None, margin, at("2026-11-01T12:00:00Z")).expect("c");
        assert_eq!(c.standing, Standing::AtRisk, "{}", c.reason);
        // Never exchanged: counted from the daemon's start, else unknown.
        let never = TableState::default();
        let c = assess(spec, &never, None, margin, at("2026-11-01T12:00:00Z")).expect("c");
        assert_eq!(c.standing, Standing::Unknown);
        let c = assess(
            spec,
            &never,
            Some(at("2026-10-30T00:00:00Z")),
            margin,
            at("2026-11-01T12:00:00Z"),
        )
        .expect("c");
        assert_eq!(c.standing, Standing::Late);
    }
}
