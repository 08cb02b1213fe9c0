//! One table inside the daemon: its runs on schedule, what wakes it early (a resync or a
//! resubmission asked for, new rows announced), and retries with backoff when it fails.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;

use super::{What, no_progress, run_one};
use crate::job::{Ctx, JobError, Plan};
use crate::schedule::{StepWatch, Timer, sleep_until};
use crate::state::{ResyncState, parse_ts};

/// When a table should first run after start: interval schedules at once; calendar
/// schedules at their next time, or at once when a scheduled run was missed.
fn first_run(
    timer: &Timer,
    last: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    tz: &chrono_tz::Tz,
) -> DateTime<Utc> {
    if timer.schedule.is_interval() {
        return now;
    }
    match last.and_then(|l| timer.schedule.next_after(l, tz)) {
        Some(due) if due <= now => now,
        _ => timer.next(now, tz, rand::random()).unwrap_or(now),
    }
}

/// The next run after the wall clock was stepped by `step` since `next` was set. A wait
/// counted in elapsed time (an interval from the last cycle, a retry's backoff) keeps what was
/// left of it, so it moves with the clock. A calendar run is the earlier of the one planned
/// (already due when the clock jumped past it) and the schedule's next from the clock's new
/// time (when it was set back over one).
fn after_step(
    next: DateTime<Utc>,
    step: chrono::Duration,
    elapsed_time: bool,
    calendar_next: Option<DateTime<Utc>>,
) -> DateTime<Utc> {
    if elapsed_time {
        return next + step;
    }
    calendar_next.map_or(next, |c| next.min(c))
}

/// How long to wait before trying a failed table again: an outage is retried soon (1 s,
/// doubling up to `retry_max`, with ±20 % jitter so that many agents do not retry in step);
/// a problem that needs a person at most once a minute.
fn retry_wait(e: &JobError, failures: u32, retry_max: Duration) -> Duration {
    if !e.is_retriable() {
        return Duration::from_secs(60);
    }
    let base = Duration::from_secs(1)
        .saturating_mul(1u32 << failures.saturating_sub(1).min(20))
        .min(retry_max);
    base.mul_f64(rand::random_range(0.8..1.2))
}

/// What wakes a sleeping table early.
#[derive(Debug, Default)]
pub struct Wake {
    /// A full resync was requested (or one is to be resumed), or rejects are to be sent
    /// again.
    pub asked: Notify,
    /// The source announced new rows (PostgreSQL NOTIFY).
    pub data: Notify,
    /// The daemon saw something asked of the table (a resync, rejects to send again) the
    /// last time it looked: a scheduled run asks the state store what, instead of every run
    /// asking it.
    pub pending: std::sync::atomic::AtomicBool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reason {
    Scheduled,
    Data,
    Asked,
}

/// What was asked of a table: a requested (or interrupted) full resync comes before
/// anything else, then rejects to send again.
async fn asked(ctx: &Ctx, table: &str) -> Option<What> {
    let resync = matches!(
        ctx.state.resync_of(table).await,
        Ok(Some(r)) if matches!(r.state, ResyncState::Requested | ResyncState::Running)
    );
    if resync {
        return Some(What::Resync);
    }
    match ctx.state.asked(table).await {
        Ok(a) if !a.is_empty() => Some(What::Resubmit),
        _ => None,
    }
}

/// One table inside the daemon: its cycles on schedule, a resync when asked, retries with
/// backoff when it fails; stops between batches when the daemon stops.
pub async fn table_loop(ctx: Arc<Ctx>, idx: usize, wake: Arc<Wake>) {
    let Some(spec) = ctx.cfg.tables.get(idx) else {
        return;
    };
    let tz = ctx.cfg.agent.tz;
    let timer = Timer {
        schedule: spec.schedule.clone(),
        jitter: spec.jitter,
    };
    let last = ctx
        .state
        .tables()
        .await
        .ok()
        .and_then(|t| t.into_iter().find(|s| s.table == spec.name))
        .and_then(|s| s.last_finished.as_deref().and_then(parse_ts));
    let mut next = first_run(&timer, last, Utc::now(), &tz);
    tracing::info!(table = %spec.name, schedule = %spec.schedule, next = %next.with_timezone(&tz), "table scheduled");
    let mut plan: Option<Plan> = None;
    let mut failures: u32 = 0;
    let mut recorded = None;
    // What was asked before the start (an interrupted resync) comes before the first cycle.
    let mut first = true;
    let mut clock = StepWatch::new();
    loop {
        if let Some(step) = clock.step() {
            let elapsed = failures > 0 || timer.schedule.is_interval();
            let calendar = timer.next(Utc::now(), &tz, rand::random());
            next = after_step(next, step, elapsed, calendar);
            let by =
                humantime::format_duration(Duration::from_secs(step.num_seconds().unsigned_abs()));
            let way = if step < chrono::Duration::zero() {
                "back"
            } else {
                "forward"
            };
            tracing::warn!(table = %spec.name, next = %next.with_timezone(&tz), "the system clock was set {way} by {by}; the next run follows it");
        }
        if recorded != Some(next) {
            match ctx.state.set_next_run(&spec.name, next).await {
                Ok(()) => recorded = Some(next),
                Err(e) => tracing::warn!(table = %spec.name, "cannot record the next run: {e}"),
            }
        }
        let reason = tokio::select! {
            _ = sleep_until(next, Utc::now()) => Reason::Scheduled,
            _ = wake.data.notified() => Reason::Data,
            _ = wake.asked.notified() => Reason::Asked,
            _ = ctx.cancel.cancelled() => break,
        };
        // A failing table waits out its backoff: what was asked of it (its resync or rejects
        // to send again, which the daemon asks for every second) is done at its next attempt,
        // and new rows announced (which may be what it fails on) are read then too.
        if reason != Reason::Scheduled && failures > 0 && Utc::now() < next {
            continue;
        }
        let look = std::mem::take(&mut first)
            || reason == Reason::Asked
            || wake.pending.load(std::sync::atomic::Ordering::Relaxed);
        let what = match (look, reason) {
            (false, _) => What::Cycle,
            (true, _) => match (asked(&ctx, &spec.name).await, reason) {
                (Some(what), _) => what,
                (None, Reason::Asked) => continue,
                (None, _) => What::Cycle,
            },
        };
        if let (Reason::Data, Some(p)) = (reason, &plan) {
            p.woken.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let result = run_one(&ctx, spec, &mut plan, what, false, &no_progress).await;
        let now = Utc::now();
        let scheduled = match (what, reason) {
            // After a resync, a resubmission or an early wake-up, the scheduled run stays
            // where it was.
            (What::Resync | What::Resubmit, _) | (_, Reason::Data) => next.max(now),
            _ => timer
                .next(now, &tz, rand::random())
                .unwrap_or(now + chrono::Duration::hours(1)),
        };
        next = match &result {
            Ok(r) => {
                if failures > 0 {
                    tracing::info!(table = %spec.name, "table recovered after {failures} failed attempt(s)");
                }
                failures = 0;
                if r.sent + r.deleted + r.rejected > 0 {
                    tracing::info!(table = %spec.name, sent = r.sent, deleted = r.deleted, quarantined = r.rejected, "cycle done");
                }
                scheduled
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let wait = retry_wait(e, failures, ctx.cfg.agent.retry_max);
                // Said on the first failures, then less and less often.
                if failures.is_power_of_two() || failures.is_multiple_of(60) {
                    tracing::error!(table = %spec.name, attempt = failures, retry_in = ?wait, "{e}");
                } else {
                    tracing::debug!(table = %spec.name, attempt = failures, retry_in = ?wait, "{e}");
                }
                // A failed resync is tried again then too: every wake-up looks for one
                // pending, and it resumes from its last chunk.
                let retry = now + chrono::Duration::from_std(wait).unwrap_or_default();
                // An outage is retried before the next scheduled run; a problem that needs a
                // person waits for it (and at least a minute).
                if e.is_retriable() {
                    scheduled.min(retry)
                } else {
                    scheduled.max(retry)
                }
            }
        };
        // A step is measured from the moment `next` was computed from the clock.
        clock = StepWatch::new();
        if ctx.cancel.is_cancelled() {
            break;
        }
    }
    tracing::info!(table = %spec.name, "table stopped");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::ErrorClass;

    #[test]
    fn a_clock_step_moves_elapsed_waits_and_leaves_calendar_runs() {
        let t = |s: &str| s.parse::<DateTime<Utc>>().expect("time");
        let next = t("2026-12-08T06:32:27Z");
        let back = chrono::Duration::seconds(-29_840);
        // A retry (or an interval) due in a minute is still due in a minute, not in 8 h.
        assert_eq!(
            after_step(next, back, true, Some(t("2026-12-08T02:00:00Z"))),
            t("2026-12-07T22:15:07Z")
        );
        // Daily at 02:00, planned for the 9th by a clock that ran ahead; set back to the 7th
        // at 22:15, the run of the 8th comes first.
        let daily = t("2026-12-09T02:00:00Z");
        assert_eq!(
            after_step(daily, back, false, Some(t("2026-12-08T02:00:00Z"))),
            t("2026-12-08T02:00:00Z")
        );
        // Set forward past the planned run: it is due now, not skipped to the day after.
        let forward = chrono::Duration::hours(6);
        assert_eq!(
            after_step(daily, forward, false, Some(t("2026-12-10T02:00:00Z"))),
            daily
        );
        assert_eq!(after_step(daily, forward, false, None), daily);
    }

    fn failure(class: ErrorClass) -> JobError {
        JobError {
            class,
            ..JobError::new("t", "writing", "boom")
        }
    }

    #[test]
    fn an_outage_is_retried_with_capped_exponential_backoff_and_jitter() {
        let e = failure(ErrorClass::Unavailable);
        let max = Duration::from_secs(60);
        for (failures, base) in [
            (1u32, 1u64),
            (2, 2),
            (3, 4),
            (4, 8),
            (6, 32),
            (7, 60),
            (40, 60),
        ] {
            let mut seen = Vec::new();
            for _ in 0..200 {
                let w = retry_wait(&e, failures, max).as_secs_f64();
                let b = base as f64;
                assert!(
                    (0.8 * b..=1.2 * b).contains(&w),
                    "failure {failures}: {w} s is not within 20 % of {b} s"
                );
                seen.push(w);
            }
            // Jitter: agents that failed together do not all retry in step.
            seen.sort_by(f64::total_cmp);
            assert!(
                seen[199] - seen[0] > 0.1 * base as f64,
                "no jitter: {seen:?}"
            );
        }
        // A lock conflict is retried the same way; a problem that needs a person once a minute.
        assert!(retry_wait(&failure(ErrorClass::Transient), 1, max) < Duration::from_secs(2));
        assert_eq!(
            retry_wait(&failure(ErrorClass::Fatal), 1, max),
            Duration::from_secs(60)
        );
        assert_eq!(
            retry_wait(&failure(ErrorClass::Data), 9, max),
            Duration::from_secs(60)
        );
    }
}
