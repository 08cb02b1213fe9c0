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
    /// Daily and weekly times are local times of `tz`, computed day by day.
    pub fn next_after(&self, after: DateTime<Utc>, tz: &Tz) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(tz);
        // The first of the local days `first`, `first + step`, ... whose time is after `after`.
        let first_day_after = |first: chrono::NaiveDate, step: i64, at: NaiveTime| {
            (0..3)
                .filter_map(|k| at_local(tz, first + CDuration::days(k * step), at))
                .find(|t| *t > local)
                .map(|t| t.with_timezone(&Utc))
        };
        match self {
            Schedule::Realtime(d) | Schedule::Every(d) => {
                Some(after + CDuration::from_std(*d).ok()?)
            }
            Schedule::Hourly { minute } => {
                let mut t = local
                    .with_minute(*minute)?
                    .with_second(0)?
                    .with_nanosecond(0)?;
                while t <= local {
                    t += CDuration::hours(1);
                }
                Some(t.with_timezone(&Utc))
            }
            Schedule::Daily { at } => first_day_after(local.date_naive(), 1, *at),
            Schedule::Weekly { day, at } => {
                let back = i64::from(local.weekday().num_days_from_monday())
                    - i64::from(day.num_days_from_monday());
                first_day_after(local.date_naive() - CDuration::days(back), 7, *at)
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

/// A local date and time in `tz`: the earlier one when the clock is set back, an hour later
/// when the clock skips it (zones with daylight saving; China and Vietnam have none).
fn at_local(tz: &Tz, date: chrono::NaiveDate, at: NaiveTime) -> Option<DateTime<Tz>> {
    let t = date.and_time(at);
    tz.from_local_datetime(&t).earliest().or_else(|| {
        tz.from_local_datetime(&(t + CDuration::hours(1)))
            .earliest()
    })
}

/// When a table runs: its schedule, plus up to `jitter` for calendar schedules, so that many
/// departments do not reach the province in the same second.
#[derive(Clone, Debug)]
pub struct Timer {
    pub schedule: Schedule,
    pub jitter: Duration,
}

impl Timer {
    /// The next run after `after`; `draw` in [0, 1) picks the jitter.
    pub fn next(&self, after: DateTime<Utc>, tz: &Tz, draw: f64) -> Option<DateTime<Utc>> {
        let base = self.schedule.next_after(after, tz)?;
        if self.schedule.is_interval() || self.jitter.is_zero() {
            return Some(base);
        }
        let extra = self.jitter.mul_f64(draw.clamp(0.0, 0.999_999));
        Some(base + CDuration::from_std(extra).ok()?)
    }
}

/// Sleep until the wall-clock instant `at`, read from `now`, on the tokio clock (so tests can
/// run schedules in paused time).
pub async fn sleep_until(at: DateTime<Utc>, now: DateTime<Utc>) {
    tokio::time::sleep((at - now).to_std().unwrap_or_default()).await;
}

/// How far the wall clock may drift from the monotonic clock between two looks before it
/// counts as stepped (NTP slews smaller offsets; a step is usually seconds to hours).
const STEP_TOLERANCE: CDuration = CDuration::seconds(5);

/// Notices when the system's wall clock is stepped (an NTP correction at boot, `date -s`):
/// between two looks the wall clock moved differently from the monotonic clock. A wait that
/// was computed as a wall-clock instant (a retry, an interval) would otherwise last as long as
/// the step: hours after a clock that ran ahead is set back.
#[derive(Clone, Copy, Debug)]
pub struct StepWatch {
    wall: DateTime<Utc>,
    mono: std::time::Instant,
}

impl StepWatch {
    pub fn new() -> Self {
        Self {
            wall: Utc::now(),
            mono: std::time::Instant::now(),
        }
    }

    /// The step since the last look (positive: the clock moved forward), when it is larger
    /// than a few seconds.
    pub fn step(&mut self) -> Option<CDuration> {
        self.step_at(Utc::now(), std::time::Instant::now())
    }

    fn step_at(&mut self, wall: DateTime<Utc>, mono: std::time::Instant) -> Option<CDuration> {
        let elapsed = CDuration::from_std(mono.saturating_duration_since(self.mono))
            .unwrap_or(CDuration::MAX);
        let drift = (wall - self.wall) - elapsed;
        self.wall = wall;
        self.mono = mono;
        (drift.abs() > STEP_TOLERANCE).then_some(drift)
    }
}

impl Default for StepWatch {
    fn default() -> Self {
        Self::new()
    }
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
    fn local_times_stay_put_without_daylight_saving() {
        let tz = shanghai();
        let daily = Schedule::parse("daily@01:30").expect("parse");
        let mut t = utc("2026-01-01T00:00:00Z");
        for _ in 0..400 {
            let next = daily.next_after(t, &tz).expect("next");
            assert_eq!(
                next.with_timezone(&tz).format("%H:%M:%S").to_string(),
                "01:30:00"
            );
            if t > utc("2026-01-02T00:00:00Z") {
                assert_eq!(next - t, CDuration::days(1));
            }
            t = next;
        }
    }

    #[test]
    fn a_skipped_local_time_runs_an_hour_later() {
        let ny: Tz = "America/New_York".parse().expect("tz");
        let daily = Schedule::parse("daily@02:30").expect("parse");
        // 2026-03-08 02:30 does not exist in New York (clocks jump from 02:00 to 03:00).
        let next = daily
            .next_after(utc("2026-03-07T12:00:00Z"), &ny)
            .expect("next");
        assert_eq!(next, utc("2026-03-08T07:30:00Z"));
        let after = daily.next_after(next, &ny).expect("next");
        assert_eq!(
            after.with_timezone(&ny).format("%d %H:%M").to_string(),
            "09 02:30"
        );
    }

    #[test]
    fn jitter_stays_within_its_bound() {
        let tz = shanghai();
        let now = utc("2026-11-23T16:00:00Z");
        let base = utc("2026-11-23T17:30:00Z");
        let timer = Timer {
            schedule: Schedule::parse("daily@01:30").expect("parse"),
            jitter: Duration::from_secs(300),
        };
        assert_eq!(timer.next(now, &tz, 0.0), Some(base));
        for i in 0..1000 {
            let draw = f64::from(i) / 1000.0;
            let t = timer.next(now, &tz, draw).expect("next");
            assert!(t >= base && t < base + CDuration::seconds(300), "{t}");
        }
        assert_eq!(
            timer
                .next(now, &tz, 0.9999999)
                .map(|t| t < base + CDuration::seconds(300)),
            Some(true)
        );
        let interval = Timer {
            schedule: Schedule::parse("every:30s").expect("parse"),
            jitter: Duration::from_secs(300),
        };
        assert_eq!(
            interval.next(now, &tz, 0.5),
            Some(now + CDuration::seconds(30)),
            "no jitter on intervals"
        );
    }

    #[test]
    fn a_stepped_wall_clock_is_noticed_and_measured() {
        let wall = utc("2026-12-08T06:31:26Z");
        let mono = std::time::Instant::now();
        let mut watch = StepWatch { wall, mono };
        let later = |s: u64| mono + Duration::from_secs(s);
        // Both clocks moved 10 s, or the wall clock 3 s more (a slew): no step.
        assert_eq!(
            watch.step_at(wall + CDuration::seconds(10), later(10)),
            None
        );
        assert_eq!(
            watch.step_at(wall + CDuration::seconds(23), later(20)),
            None
        );
        // Set back by 29,840 s, as a clock that ran ahead is corrected.
        assert_eq!(
            watch.step_at(wall + CDuration::seconds(33 - 29_840), later(30)),
            Some(CDuration::seconds(-29_840))
        );
        // Measured from the last look, not from the first.
        assert_eq!(
            watch.step_at(wall + CDuration::seconds(43 - 29_840), later(40)),
            None
        );
        assert_eq!(
            watch.step_at(wall + CDuration::seconds(3_653 - 29_840), later(50)),
            Some(CDuration::seconds(3_600))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn schedules_wait_the_right_time_on_the_tokio_clock() {
        let tz = shanghai();
        let start = tokio::time::Instant::now();
        // Every 30 s from the previous run.
        let every = Timer {
            schedule: Schedule::parse("every:30s").expect("parse"),
            jitter: Duration::ZERO,
        };
        let mut clock = utc("2026-11-23T16:00:00Z");
        for k in 1..=3u64 {
            let next = every.next(clock, &tz, 0.5).expect("next");
            sleep_until(next, clock).await;
            clock = next;
            assert_eq!(start.elapsed(), Duration::from_secs(30 * k));
        }
        // Then the daily run at 01:30 Shanghai time: 16:01:30 UTC -> 17:30:00 UTC.
        let daily = Timer {
            schedule: Schedule::parse("daily@01:30").expect("parse"),
            jitter: Duration::ZERO,
        };
        let before = tokio::time::Instant::now();
        let next = daily.next(clock, &tz, 0.0).expect("next");
        sleep_until(next, clock).await;
        assert_eq!(before.elapsed(), Duration::from_secs(88 * 60 + 30));
        // And the weekly one: Sunday 03:00.
        let weekly = Timer {
            schedule: Schedule::parse("weekly@sun 03:00").expect("parse"),
            jitter: Duration::ZERO,
        };
        let next = weekly.next(next, &tz, 0.0).expect("next");
        assert_eq!(next, utc("2026-11-28T19:00:00Z"));
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
