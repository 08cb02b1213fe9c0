//! Which alerts are open, and what a new look at the tables changes: a condition seen for the
//! first time opens an alert, one still seen is sent again only after `alert_repeat`, one no
//! longer seen is closed by a recovery. Pure, so that the throttling is tested without a clock.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::alert::EventKind;
use crate::state::{parse_ts, ts};

/// Something wrong that holds now.
#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    /// What one alert follows: `failing:t`, `compliance:t` (at risk, then late),
    /// `unreachable:exchange`, `rejects:t`.
    pub key: String,
    pub kind: EventKind,
    pub table: Option<String>,
    pub since: String,
    pub what: String,
    pub todo: String,
}

/// An alert that was sent and not yet closed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Opened {
    pub kind: EventKind,
    pub table: Option<String>,
    pub since: String,
    pub what: String,
    /// When it was last sent.
    pub sent: String,
}

/// What to send.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// A new condition, or one that got worse (at risk -> late).
    Open(Condition),
    /// Still there after `alert_repeat`.
    Repeat(Condition),
    /// Gone: the table recovered.
    Resolve(Opened),
}

/// The open alerts, and the last resync end each table was told of; kept in the state store
/// so that a restart neither repeats nor forgets them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Tracker {
    pub open: BTreeMap<String, Opened>,
    pub resyncs: BTreeMap<String, String>,
}

impl Tracker {
    /// Compare what holds now with what is open; returns what to send, and remembers it.
    pub fn step(
        &mut self,
        now: DateTime<Utc>,
        active: Vec<Condition>,
        repeat: Duration,
    ) -> Vec<Change> {
        let mut out = Vec::new();
        let keys: Vec<String> = active.iter().map(|c| c.key.clone()).collect();
        for c in active {
            let sent_now = || Opened {
                kind: c.kind,
                table: c.table.clone(),
                since: c.since.clone(),
                what: c.what.clone(),
                sent: ts(now),
            };
            match self.open.get(&c.key) {
                None => {
                    self.open.insert(c.key.clone(), sent_now());
                    out.push(Change::Open(c));
                }
                Some(o) if o.kind != c.kind => {
                    self.open.insert(c.key.clone(), sent_now());
                    out.push(Change::Open(c));
                }
                Some(o) => {
                    let due = parse_ts(&o.sent)
                        .and_then(|s| (now - s).to_std().ok())
                        .is_none_or(|d| d >= repeat);
                    if due {
                        let mut o = o.clone();
                        o.sent = ts(now);
                        self.open.insert(c.key.clone(), o);
                        out.push(Change::Repeat(c));
                    }
                }
            }
        }
        let gone: Vec<String> = self
            .open
            .keys()
            .filter(|k| !keys.contains(k))
            .cloned()
            .collect();
        for k in gone {
            if let Some(o) = self.open.remove(&k) {
                out.push(Change::Resolve(o));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(key: &str, kind: EventKind) -> Condition {
        Condition {
            key: key.into(),
            kind,
            table: Some("t".into()),
            since: "2026-11-01T00:00:00Z".into(),
            what: "w".into(),
            todo: "d".into(),
        }
    }

    fn at(s: u32) -> DateTime<Utc> {
        parse_ts("2026-11-01T00:00:00Z").expect("t") + chrono::Duration::seconds(i64::from(s))
    }

    #[test]
    fn opens_once_repeats_after_the_throttle_and_closes_on_recovery() {
        let repeat = Duration::from_secs(3600);
        let mut t = Tracker::default();
        let f = cond("failing:t", EventKind::Failing);
        let ch = t.step(at(0), vec![f.clone()], repeat);
        assert_eq!(ch, vec![Change::Open(f.clone())]);
        for s in 1..100 {
            assert!(
                t.step(at(s), vec![f.clone()], repeat).is_empty(),
                "second {s}"
            );
        }
        assert_eq!(
            t.step(at(3600), vec![f.clone()], repeat),
            vec![Change::Repeat(f.clone())]
        );
        assert!(t.step(at(3601), vec![f.clone()], repeat).is_empty());
        let ch = t.step(at(3700), vec![], repeat);
        assert!(
            matches!(&ch[..], [Change::Resolve(o)] if o.kind == EventKind::Failing),
            "{ch:?}"
        );
        assert!(t.open.is_empty());
        assert!(t.step(at(3701), vec![], repeat).is_empty());
    }

    #[test]
    fn at_risk_turning_late_is_sent_at_once() {
        let repeat = Duration::from_secs(3600);
        let mut t = Tracker::default();
        let r = cond("compliance:t", EventKind::AtRisk);
        let l = cond("compliance:t", EventKind::Late);
        assert_eq!(t.step(at(0), vec![r.clone()], repeat).len(), 1);
        assert!(t.step(at(5), vec![r], repeat).is_empty());
        assert_eq!(
            t.step(at(10), vec![l.clone()], repeat),
            vec![Change::Open(l)]
        );
        let ch = t.step(at(20), vec![], repeat);
        assert!(
            matches!(&ch[..], [Change::Resolve(o)] if o.kind == EventKind::Late),
            "{ch:?}"
        );
    }
}
