//! The span of a timestamp-like cycle, worked out before anything is read: up to which time
//! it reads, from where (strictly after the watermark, or re-reading the lookback window
//! behind it), which transactions a re-read asks for, and from which time the digests of
//! the rows exchanged are kept. Pure arithmetic on values, tested without a database.

use std::time::Duration;

use super::Plan;
use crate::db::Snapshot;
use crate::db::dialect::Cond;
use crate::ident::Col;
use crate::value::Value;
use crate::watermark::{Reread, Watermark, cmp_values};

/// Whether this cycle re-reads the lookback window, and the time its re-read reaches back
/// from.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Sweep {
    pub(super) due: bool,
    /// The watermark's time when the last re-read started, where that is behind the
    /// watermark now (so that the window re-read joins the last one), else the watermark's.
    pub(super) base: Option<Value>,
}

impl Sweep {
    /// Where a re-read begins: `lookback` before its base. `None` when this cycle does not
    /// re-read (it begins at the watermark's time then).
    pub(super) fn lower(&self, wm: &Watermark, lookback: Duration, format: &str) -> Option<Value> {
        if self.due {
            self.base.as_ref().map(|t| back(t, lookback, format))
        } else {
            wm.ts.clone()
        }
    }
}

/// Re-read the lookback window behind the watermark and skip rows already exchanged: every
/// cycle, or at most once per `lookback / 10` for tables polled more often than that, and
/// once per `lookback / 2` while its re-reads find nothing new. A re-read reaches back from
/// the watermark of the previous one, so a row committed with a time within the lookback of
/// the watermark then is still found however long after; the period only decides how soon.
/// The cycles between read only after the watermark.
pub(super) fn due(plan: &Plan, wm: &Watermark, lookback: Duration) -> Sweep {
    let s = plan.sweep.lock().unwrap_or_else(|e| e.into_inner());
    let period = if s.quiet { lookback / 2 } else { lookback / 10 };
    let period = period.max(Duration::from_secs(1));
    let due = s.at.is_none_or(|t| t.elapsed() >= period);
    let base = match (&s.from, &wm.ts) {
        (Some(f), Some(t)) if cmp_values(f, t).is_lt() => Some(f.clone()),
        _ => wm.ts.clone(),
    };
    Sweep {
        due: due && !lookback.is_zero(),
        base,
    }
}

/// A time moved back by the lookback (unchanged when it cannot be).
fn back(t: &Value, lookback: Duration, format: &str) -> Value {
    t.minus(lookback, format).unwrap_or_else(|| t.clone())
}

/// What the span of a cycle is worked out from.
pub(super) struct SpanInput<'a> {
    pub(super) wm: &'a Watermark,
    pub(super) lookback: Duration,
    /// The format of a text change time.
    pub(super) format: &'a str,
    pub(super) sweep: &'a Sweep,
    /// The latest change time read: the source's time, less the lag.
    pub(super) upper: Value,
    /// Just before the oldest transaction still open at the source.
    pub(super) guard: Option<Value>,
    /// The last complete re-read's record, the source's transaction ids now, and the
    /// change-time column (a re-read may be narrowed by them; see [`narrowed`]).
    pub(super) prior: Option<&'a Reread>,
    pub(super) snap: Option<&'a Snapshot>,
    pub(super) column: &'a str,
}

/// The span of one cycle.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Span {
    pub(super) upper: Value,
    /// Read from this time on (with a re-read or a watermark held back without a key).
    pub(super) lower: Option<Value>,
    /// Read strictly after this (time, key...) position (without a re-read).
    pub(super) cursor: Option<Vec<Value>>,
    /// A re-read asks, at or before the watermark, only for rows of transactions from this
    /// id (its low 32 bits) on.
    pub(super) narrowed: Option<u32>,
    pub(super) guard: Option<Value>,
    /// The watermark's (time, key) when the cycle began, and its time.
    pub(super) at: Vec<Value>,
    pub(super) start: Option<Value>,
    /// Digests are kept from here on: where the next re-read will begin.
    keep_from: Option<Value>,
    lookback: Duration,
    pub(super) format: String,
}

impl Span {
    pub(super) fn of(i: &SpanInput<'_>) -> Span {
        let (sweep, wm) = (i.sweep, i.wm);
        let lower = sweep.lower(wm, i.lookback, i.format);
        let keep_from = if sweep.due {
            wm.ts.as_ref()
        } else {
            sweep.base.as_ref()
        }
        .map(|t| back(t, i.lookback, i.format));
        // Without a re-read, continue strictly after the last (time, key); a watermark held
        // back by an open transaction has no key and is read again from its time on.
        let cursor =
            (!sweep.due && wm.ts.is_some() && !wm.key.is_empty()).then(|| super::tuple(wm));
        Span {
            narrowed: narrowed(i.prior, i.snap, i.column, lower.as_ref(), wm),
            upper: i.upper.clone(),
            lower,
            cursor,
            guard: i.guard.clone(),
            at: super::tuple(wm),
            start: wm.ts.clone(),
            keep_from,
            lookback: i.lookback,
            format: i.format.to_owned(),
        }
    }

    /// The conditions of the cycle's select.
    pub(super) fn conds<'a>(&'a self, ts_col: &'a Col, order: &'a [Col]) -> Vec<Cond<'a>> {
        let mut conds = vec![Cond::AtMost(ts_col, &self.upper)];
        match (&self.cursor, &self.lower) {
            (Some(c), _) => conds.push(Cond::After(order, c)),
            (None, Some(l)) => conds.push(Cond::AtLeast(ts_col, l)),
            (None, None) => {}
        }
        if let Some(x) = self.narrowed {
            let n = self.at.len().min(order.len());
            conds.push(Cond::AfterOrWrittenSince(&order[..n], &self.at, x));
        }
        conds
    }

    /// From which time the digests of the rows exchanged are kept, once the watermark is
    /// `w`: the value, and its text for the state store.
    pub(super) fn prune_for(&self, w: &Watermark) -> Option<(Value, String)> {
        let t = back(w.ts.as_ref()?, self.lookback, &self.format);
        let from = match &self.keep_from {
            Some(k) if cmp_values(k, &t).is_lt() => k.clone(),
            _ => t,
        };
        let text = from.sort_text();
        Some((from, text))
    }
}

/// The low 32 bits of the transaction id from which a re-read of the lookback window asks
/// for rows at or before the watermark `wm`: the rows of older transactions there were seen
/// by the last complete re-read `last` or by the cycles after it, which read on from where
/// each stopped, and were exchanged (a row changed since was written by a later
/// transaction). `None`, and the window is read whole, when there is no such record, it
/// was of another column or began after this re-read's `lower`, there is no watermark, or
/// the ids do not follow on: the server's next id is below the recorded one (a database
/// restored into another cluster) or 2^30 or more past it (ids are compared modulo 2^32).
pub(super) fn narrowed(
    last: Option<&Reread>,
    snap: Option<&Snapshot>,
    column: &str,
    lower: Option<&Value>,
    wm: &Watermark,
) -> Option<u32> {
    let (last, snap) = (last?, snap?);
    wm.ts.as_ref()?;
    if last.column != column {
        return None;
    }
    if let Some(from) = &last.from
        && lower.is_none_or(|l| crate::watermark::cmp_values(l, from).is_lt())
    {
        return None;
    }
    let since = snap.xmax.checked_sub(last.xmin)?;
    (since < 1 << 30).then_some((last.xmin & 0xffff_ffff) as u32)
}

/// A watermark never passes the start of a transaction still open on the source: the rows it
/// commits later may carry an earlier time than rows already exchanged.
pub(super) fn held_back(pos: Watermark, guard: Option<&Value>) -> Watermark {
    match (guard, &pos.ts) {
        (Some(g), Some(t)) if crate::watermark::cmp_values(t, g).is_ge() => Watermark {
            ts: Some(g.clone()),
            key: Vec::new(),
        },
        _ => pos,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Value {
        Value::Text(s.into())
    }

    #[test]
    fn a_reread_is_narrowed_only_where_the_last_one_vouches_for_the_window() {
        let wm = Watermark {
            ts: Some(ts("2026-12-01 08:05:00")),
            key: vec![Value::Int(9)],
        };
        let last = Reread {
            column: "updated_at".into(),
            from: Some(ts("2026-12-01 08:00:00")),
            xmin: (3 << 32) + 1000,
        };
        let snap = Snapshot {
            xmin: (3 << 32) + 1500,
            xmax: (3 << 32) + 2000,
        };
        let lower = ts("2026-12-01 08:01:00");
        // The low 32 bits of the recorded id.
        assert_eq!(
            narrowed(Some(&last), Some(&snap), "updated_at", Some(&lower), &wm),
            Some(1000)
        );
        // A window beginning where the last began is vouched for; one beginning before it
        // is not, nor is a record of another column, nor no record or no snapshot.
        let at_from = ts("2026-12-01 08:00:00");
        assert_eq!(
            narrowed(Some(&last), Some(&snap), "updated_at", Some(&at_from), &wm),
            Some(1000)
        );
        let before = ts("2026-12-01 07:59:59");
        assert_eq!(
            narrowed(Some(&last), Some(&snap), "updated_at", Some(&before), &wm),
            None
        );
        assert_eq!(
            narrowed(Some(&last), Some(&snap), "updated_at", None, &wm),
            None
        );
        assert_eq!(
            narrowed(Some(&last), Some(&snap), "changed_at", Some(&lower), &wm),
            None
        );
        assert_eq!(
            narrowed(None, Some(&snap), "updated_at", Some(&lower), &wm),
            None
        );
        assert_eq!(
            narrowed(Some(&last), None, "updated_at", Some(&lower), &wm),
            None
        );
        // A record from the table's beginning vouches for any window.
        let whole = Reread {
            from: None,
            ..last.clone()
        };
        assert_eq!(
            narrowed(Some(&whole), Some(&snap), "updated_at", None, &wm),
            Some(1000)
        );
        // No watermark: nothing is at or before it.
        let none = Watermark::default();
        assert_eq!(
            narrowed(Some(&last), Some(&snap), "updated_at", Some(&lower), &none),
            None
        );
        // Ids that do not follow on: the server behind the record (another cluster), or
        // 2^30 or more past it (modulo 2^32 they could no longer be told apart).
        let behind = Snapshot { xmin: 10, xmax: 20 };
        assert_eq!(
            narrowed(Some(&last), Some(&behind), "updated_at", Some(&lower), &wm),
            None
        );
        let far = Snapshot {
            xmin: last.xmin + (1 << 30),
            xmax: last.xmin + (1 << 30),
        };
        assert_eq!(
            narrowed(Some(&last), Some(&far), "updated_at", Some(&lower), &wm),
            None
        );
        let near = Snapshot {
            xmin: last.xmin,
            xmax: last.xmin + (1 << 30) - 1,
        };
        assert_eq!(
            narrowed(Some(&last), Some(&near), "updated_at", Some(&lower), &wm),
            Some(1000)
        );
    }

    fn at(s: &str) -> Value {
        Value::Timestamp(
            chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").expect("time"),
        )
    }

    fn span(wm: &Watermark, sweep: &Sweep) -> Span {
        Span::of(&SpanInput {
            wm,
            lookback: Duration::from_secs(600),
            format: "%Y-%m-%d %H:%M:%S",
            sweep,
            upper: at("2026-12-07 10:00:00"),
            guard: None,
            prior: None,
            snap: None,
            column: "updated_at",
        })
    }

    fn col(name: &str) -> Col {
        Col {
            name: crate::ident::Ident::new(name).expect("identifier"),
            ty: crate::value::ColType::Timestamp,
            native: "timestamp".into(),
        }
    }

    #[test]
    fn without_a_re_read_a_cycle_reads_strictly_after_the_watermark() {
        let wm = Watermark {
            ts: Some(at("2026-12-07 09:00:00")),
            key: vec![Value::Int(7)],
        };
        let sweep = Sweep {
            due: false,
            base: wm.ts.clone(),
        };
        let s = span(&wm, &sweep);
        assert_eq!(
            s.cursor,
            Some(vec![at("2026-12-07 09:00:00"), Value::Int(7)])
        );
        assert_eq!(s.lower, wm.ts);
        let (ts, order) = (col("updated_at"), [col("updated_at"), col("id")]);
        let conds = s.conds(&ts, &order);
        assert!(matches!(conds.as_slice(), [Cond::AtMost(..), Cond::After(_, c)] if c.len() == 2));
        // Digests are kept from where the next re-read begins: the base, less the lookback.
        let next = Watermark {
            ts: Some(at("2026-12-07 09:30:00")),
            key: vec![Value::Int(9)],
        };
        assert_eq!(
            s.prune_for(&next).map(|p| p.0),
            Some(at("2026-12-07 08:50:00"))
        );
    }

    #[test]
    fn a_re_read_reaches_back_the_lookback_from_where_the_last_one_began() {
        let wm = Watermark {
            ts: Some(at("2026-12-07 09:00:00")),
            key: vec![Value::Int(7)],
        };
        // The last re-read began when the watermark was at 08:55.
        let sweep = Sweep {
            due: true,
            base: Some(at("2026-12-07 08:55:00")),
        };
        let s = span(&wm, &sweep);
        assert_eq!(s.cursor, None);
        assert_eq!(s.lower, Some(at("2026-12-07 08:45:00")));
        let (ts, order) = (col("updated_at"), [col("updated_at"), col("id")]);
        let conds = s.conds(&ts, &order);
        assert!(
            matches!(conds.as_slice(), [Cond::AtMost(..), Cond::AtLeast(_, l)] if **l == at("2026-12-07 08:45:00"))
        );
        // The next re-read begins at this watermark less the lookback; digests are kept from
        // there, or from the new watermark less the lookback if that is earlier.
        let next = Watermark {
            ts: Some(at("2026-12-07 09:30:00")),
            key: vec![Value::Int(9)],
        };
        assert_eq!(
            s.prune_for(&next).map(|p| p.0),
            Some(at("2026-12-07 08:50:00"))
        );
        let behind = Watermark {
            ts: Some(at("2026-12-07 08:55:00")),
            key: vec![],
        };
        assert_eq!(
            s.prune_for(&behind).map(|p| p.0),
            Some(at("2026-12-07 08:45:00"))
        );
    }

    #[test]
    fn a_watermark_held_back_by_an_open_transaction_is_read_again_from_its_time() {
        let wm = Watermark {
            ts: Some(at("2026-12-07 09:00:00")),
            key: vec![],
        };
        let sweep = Sweep {
            due: false,
            base: wm.ts.clone(),
        };
        let s = span(&wm, &sweep);
        assert_eq!(s.cursor, None);
        assert_eq!(s.lower, wm.ts);
        // A new position never passes the guard: it becomes the guard's time, without a key.
        let guard = at("2026-12-07 09:10:00");
        let pos = Watermark {
            ts: Some(at("2026-12-07 09:20:00")),
            key: vec![Value::Int(3)],
        };
        assert_eq!(
            held_back(pos.clone(), Some(&guard)),
            Watermark {
                ts: Some(guard.clone()),
                key: vec![]
            }
        );
        let before = Watermark {
            ts: Some(at("2026-12-07 09:05:00")),
            ..pos
        };
        assert_eq!(held_back(before.clone(), Some(&guard)), before);
    }

    #[test]
    fn without_a_watermark_everything_up_to_the_upper_bound_is_read() {
        let wm = Watermark::default();
        let sweep = Sweep {
            due: true,
            base: None,
        };
        let s = span(&wm, &sweep);
        assert_eq!((s.cursor.clone(), s.lower.clone()), (None, None));
        let (ts, order) = (col("updated_at"), [col("updated_at"), col("id")]);
        assert!(matches!(
            s.conds(&ts, &order).as_slice(),
            [Cond::AtMost(..)]
        ));
        assert_eq!(s.prune_for(&wm), None);
    }
}
