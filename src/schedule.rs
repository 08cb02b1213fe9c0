//! When a table is exchanged: `realtime`, `every:`, `hourly`, `daily`, `weekly`, `cron:`.
//!
//! Calendar schedules are computed in the agent's time zone (`[agent] timezone`); interval
//! schedules count from the end of the previous cycle.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{
    DateTime, Datelike, Duration as CDuration, NaiveTime, TimeZone, Timelike, Utc, Weekday,
};
use chrono_tz::Tz;

/// Poll interval of `realtime` when none is given.
pub const REALTIME_DEFAULT: Duration = Duration::from_secs(2);

#[derive(Clone, Debug)]
pub enum Schedule {
    /// Continuous polling every interval.
    Realtime(Duration),
    /// Every interval after the previous cycle ended.
    Every(Duration),
    /// Every hour at this minute.
    Hourly { minute: u32 },
    /// Every day at this local time.
    Daily { at: NaiveTime },
    /// Every week on this day at this local time.
    Weekly { day: Weekday, at: NaiveTime },
    /// A cron expression with seconds: `sec min hour day month weekday [year]`.
    Cron(Box<cron::Schedule>),
}

impl Schedule {
    /// Parse the schedule text of the configuration; the error says what is wrong.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (word, arg) = match s.split_once(['@', ':']) {
            Some((w, a)) => (w, Some(a.trim())),
            None => (s, None),
        };
        let sched = match (word, arg) {
            ("realtime", None) => Schedule::Realtime(REALTIME_DEFAULT),
            ("realtime", Some(a)) => Schedule::Realtime(parse_interval(a)?),
            ("every", Some(a)) => Schedule::Every(parse_interval(a)?),
            ("hourly", None) => Schedule::Hourly { minute: 0 },
            ("hourly", Some(a)) => Schedule::Hourly {
                minute: a
                    .parse::<u32>()
                    .ok()
                    .filter(|m| *m < 60)
                    .ok_or_else(|| format!("`{a}` is not a minute (0-59) in `{s}`"))?,
            },
            ("daily", None) => Schedule::Daily { at: hm(1, 0) },
            ("daily", Some(a)) => Schedule::Daily { at: parse_time(a)? },
            ("weekly", None) => Schedule::Weekly {
                day: Weekday::Mon,
                at: hm(1, 0),
            },
            ("weekly", Some(a)) => {
                let (day, time) = a.split_once(' ').unwrap_or((a, "01:00"));
                Schedule::Weekly {
                    day: Weekday::from_str(day)
                        .map_err(|_| format!("`{day}` is not a day of the week in `{s}`"))?,
                    at: parse_time(time.trim())?,
                }
            }
            ("cron", Some(a)) => {
                let c = cron::Schedule::from_str(a)
                    .map_err(|e| format!("`{a}` is not a cron expression: {e}"))?;
                if c.upcoming(Utc).next().is_none() {
                    return Err(format!("cron expression `{a}` never fires"));
                }
                Schedule::Cron(Box::new(c))
            }
            _ => {
                return Err(format!(
                    "`{s}` is not a schedule: use realtime, realtime@2s, every:30s, hourly, \
                     hourly@15, daily, daily@01:30, weekly, weekly@sun 03:00 or cron:<expression>"
                ));
            }
        };
        Ok(sched)
    }

    /// The first run strictly after `after` (for interval schedules: `after` + interval).
    pub fn next_after(&self, after: DateTime<Utc>, tz: &Tz) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(tz);
        let candidates = |first: DateTime<Tz>, step: CDuration| {
            let mut t = first;
            while t <= local {
                t += step;
            }
            Some(t.with_timezone(&Utc))
        };
        match self {
            Schedule::Realtime(d) | Schedule::Every(d) => {
                Some(after + CDuration::from_std(*d).ok()?)
            }
            Schedule::Hourly { minute } => {
                let first = local
                    .with_minute(*minute)?
                    .with_second(0)?
                    .with_nanosecond(0)?;
                candidates(first, CDuration::hours(1))
            }
            Schedule::Daily { at } => {
                let first = at_local(tz, local.date_naive(), *at)?;
                candidates(first, CDuration::days(1))
            }
            Schedule::Weekly { day, at } => {
                let back = i64::from(local.weekday().num_days_from_monday())
                    - i64::from(day.num_days_from_monday());
                let date = local.date_naive() - CDuration::days(back);
                let first = at_local(tz, date, *at)?;
                candidates(first, CDuration::weeks(1))
            }
            Schedule::Cron(c) => c.after(&local).next().map(|t| t.with_timezone(&Utc)),
        }
    }

    /// Whether the schedule runs on an interval from the previous cycle rather than a calendar.
    pub fn is_interval(&self) -> bool {
        matches!(self, Schedule::Realtime(_) | Schedule::Every(_))
    }

    /// The longest time between two runs (used to enforce minimum exchange frequencies).
    pub fn max_gap(&self, tz: &Tz) -> Duration {
        match self {
            Schedule::Realtime(d) | Schedule::Every(d) => *d,
            Schedule::Hourly { .. } => Duration::from_secs(3600),
            Schedule::Daily { .. } => Duration::from_secs(86_400),
            Schedule::Weekly { .. } => Duration::from_secs(7 * 86_400),
            Schedule::Cron(c) => {
                let times: Vec<DateTime<Tz>> = c.upcoming(*tz).take(1000).collect();
                times
                    .windows(2)
                    .filter_map(|w| (w[1] - w[0]).to_std().ok())
                    .max()
                    .unwrap_or(Duration::from_secs(366 * 86_400))
            }
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Realtime(d) => write!(f, "realtime@{}", humantime::format_duration(*d)),
            Schedule::Every(d) => write!(f, "every:{}", humantime::format_duration(*d)),
            Schedule::Hourly { minute } => write!(f, "hourly@{minute:02}"),
            Schedule::Daily { at } => write!(f, "daily@{}", at.format("%H:%M")),
            Schedule::Weekly { day, at } => write!(f, "weekly@{day} {}", at.format("%H:%M")),
            Schedule::Cron(c) => write!(f, "cron:{}", c.source()),
        }
    }
}

const DAY: Duration = Duration::from_secs(86_400);
const WEEK: Duration = Duration::from_secs(7 * 86_400);

/// Data categories of DB23/T 2835-2021 (7.2.2): name, description, minimum frequency.
pub const CATEGORIES: &[(&str, &str, Duration)] = &[
    (
        "supervision_item_catalogue",
        "supervision item catalogue (监管事项目录清单)",
        DAY,
    ),
    (
        "supervision_action",
        "supervision behaviour (监管行为)",
        DAY,
    ),
    (
        "double_random",
        "double-random inspection (双随机、一公开)",
        DAY,
    ),
    ("supervision_object", "supervision object (监管对象)", DAY),
    (
        "dishonest_enterprise",
        "dishonest enterprise (失信企业)",
        DAY,
    ),
    ("knowledge_base", "knowledge base (知识库)", DAY),
    ("complaint_report", "complaint and report (投诉举报)", DAY),
    ("other", "other", WEEK),
];

/// The longest allowed gap between exchanges of a category, and its description.
pub fn category_minimum(category: &str) -> Option<(Duration, &'static str)> {
    CATEGORIES
        .iter()
        .find(|c| c.0 == category)
        .map(|c| (c.2, c.1))
}

/// `daily`, `weekly`, or `every <duration>` for a maximum gap.
pub fn frequency_words(gap: Duration) -> String {
    match gap {
        DAY => "daily".into(),
        WEEK => "weekly".into(),
        d => format!("every {}", humantime::format_duration(d)),
    }
}

fn hm(h: u32, m: u32) -> NaiveTime {
    NaiveTime::from_hms_opt(h, m, 0).unwrap_or(NaiveTime::MIN)
}

/// A local date and time in `tz` (the earlier one when the clock is set back).
fn at_local(tz: &Tz, date: chrono::NaiveDate, at: NaiveTime) -> Option<DateTime<Tz>> {
    tz.from_local_datetime(&date.and_time(at)).earliest()
}

fn parse_time(s: &str) -> Result<NaiveTime, String> {
    NaiveTime::parse_from_str(s, "%H:%M")
        .or_else(|_| NaiveTime::parse_from_str(s, "%H:%M:%S"))
        .map_err(|_| format!("`{s}` is not a time of day (HH:MM)"))
}

/// A positive duration such as `30s`, `5m`, `1h 30m`.
pub fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("`{s}` is not a duration ({e}); write e.g. 30s, 5m, 2h"))?;
    if d.is_zero() {
        return Err(format!("`{s}` is zero: an interval must be positive"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shanghai() -> Tz {
        "Asia/Shanghai".parse().expect("tz")
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&Utc)
    }

    #[test]
    fn parses_every_form() {
        for s in [
            "realtime",
            "realtime@1s",
            "every:30s",
            "every:1h 30m",
            "hourly",
            "hourly@15",
            "daily",
            "daily@01:30",
            "weekly",
            "weekly@sun 03:00",
            "cron:0 30 1 * * *",
        ] {
            assert!(Schedule::parse(s).is_ok(), "{s}");
        }
    }

    #[test]
    fn refuses_impossible_schedules() {
        for (s, why) in [
            ("every:0s", "zero"),
            ("every:soon", "not a duration"),
            ("hourly@61", "minute"),
            ("daily@25:00", "time of day"),
            ("weekly@someday 01:00", "day of the week"),
            ("cron:0 0 0 31 2 *", "never fires"),
            ("cron:banana", "cron expression"),
            ("monthly", "not a schedule"),
        ] {
            let err = Schedule::parse(s).expect_err(s);
            assert!(err.contains(why), "{s}: {err}");
        }
    }

    #[test]
    fn calendar_schedules_follow_local_time() {
        let tz = shanghai();
        // 2026-11-23 is a Monday; 17:00 UTC is 01:00 on Tuesday in Shanghai.
        let now = utc("2026-11-23T16:00:00Z");
        let daily = Schedule::parse("daily@01:30").expect("parse");
        assert_eq!(
            daily.next_after(now, &tz),
            Some(utc("2026-11-23T17:30:00Z"))
        );
        let weekly = Schedule::parse("weekly@mon 03:00").expect("parse");
        assert_eq!(
            weekly.next_after(now, &tz),
            Some(utc("2026-11-29T19:00:00Z"))
        );
        let hourly = Schedule::parse("hourly@15").expect("parse");
        assert_eq!(
            hourly.next_after(now, &tz),
            Some(utc("2026-11-23T16:15:00Z"))
        );
        let exact = Schedule::parse("hourly").expect("parse");
        assert_eq!(
            exact.next_after(now, &tz),
            Some(utc("2026-11-23T17:00:00Z"))
        );
        let cron = Schedule::parse("cron:0 30 1 * * *").expect("parse");
        assert_eq!(cron.next_after(now, &tz), Some(utc("2026-11-23T17:30:00Z")));
        let every = Schedule::parse("every:90s").expect("parse");
        assert_eq!(
            every.next_after(now, &tz),
            Some(utc("2026-11-23T16:01:30Z"))
        );
    }

    #[test]
    fn max_gap_per_kind() {
        let tz = shanghai();
        let gap = |s: &str| Schedule::parse(s).expect("parse").max_gap(&tz);
        assert_eq!(gap("daily"), Duration::from_secs(86_400));
        assert_eq!(gap("weekly@fri 02:00"), Duration::from_secs(7 * 86_400));
        assert_eq!(
            gap("cron:0 0 2 * * Mon,Thu"),
            Duration::from_secs(4 * 86_400)
        );
        assert_eq!(gap("realtime"), REALTIME_DEFAULT);
    }
}
