//! The batch-id checks of every receiver of batches: the exchange-sim (HTTP and SOAP, its
//! request log in `sim.rs`) and the file exchange's directory (its manifests in `files.rs`).
//! A receiver records a `Receipt` per batch it saw; `applied_twice` finds a batch id applied
//! more than once (a duplicate delivery, whatever the rows say), `id_reused` one that came
//! again with other content. A new receiver turns what it saw into receipts and runs both.

use std::collections::BTreeMap;

/// One batch as a receiver saw it.
#[derive(Clone, Debug)]
pub struct Receipt {
    pub batch_id: String,
    /// A digest of the batch's rows as received.
    pub content: String,
    /// Whether the receiver applied it (a replay it recognised is received, not applied).
    pub applied: bool,
}

/// Batch ids applied more than once, with how often.
pub fn applied_twice(receipts: &[Receipt]) -> Vec<(String, usize)> {
    let mut n: BTreeMap<&str, usize> = BTreeMap::new();
    for r in receipts.iter().filter(|r| r.applied) {
        *n.entry(&r.batch_id).or_default() += 1;
    }
    n.into_iter()
        .filter(|(_, c)| *c > 1)
        .map(|(id, c)| (id.to_owned(), c))
        .collect()
}

/// Batch ids that came twice with different content (an id must name its content).
pub fn id_reused(receipts: &[Receipt]) -> Vec<String> {
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    let mut out = Vec::new();
    for r in receipts {
        match seen.get(r.batch_id.as_str()) {
            Some(c) if *c != r.content => out.push(r.batch_id.clone()),
            Some(_) => {}
            None => {
                seen.insert(&r.batch_id, &r.content);
            }
        }
    }
    out
}

/// The checks catch what they are for (run at every start, so a receiver plugged in later
/// inherits checks known to work).
pub fn self_test() -> Result<(), String> {
    let r = |id: &str, c: &str, applied| Receipt {
        batch_id: id.into(),
        content: c.into(),
        applied,
    };
    let log = [
        r("b1", "x", true),
        r("b2", "y", true),
        r("b1", "x", false),
        r("b2", "y", true),
        r("b3", "z", true),
        r("b3", "w", false),
    ];
    if applied_twice(&log) != vec![("b2".to_string(), 2)] {
        return Err("applied_twice does not find b2".into());
    }
    if id_reused(&log) != vec!["b3".to_string()] {
        return Err("id_reused does not find b3".into());
    }
    Ok(())
}
