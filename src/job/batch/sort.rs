//! Sorting a batch's rows: the unchanged skipped, the unreadable quarantined, each row's
//! operation decided, and a key read twice kept in its last version.

use super::*;

/// Decode the values of a row read as a tuple that were left NULL (once).
pub(super) fn fill(values: &mut [Value], tuple: Option<&Bytes>, whole: &mut bool, plan: &Plan) {
    if !*whole {
        if let Some(t) = tuple {
            crate::db::complete(values, t, &plan.read_cols);
        }
        *whole = true;
    }
}

/// What the rows of a read turned into before anything is written.
#[derive(Default)]
pub(super) struct Sorted {
    pub(super) pending: Vec<(String, Pending)>,
    pub(super) rejects: Vec<Reject>,
    pub(super) digests: Vec<DigestEntry>,
    pub(super) flag_failed: Vec<(Vec<Value>, String)>,
    pub(super) newest: Option<DateTime<Utc>>,
}

/// Classify the rows read: skip the unchanged, quarantine the unreadable, decide each
/// row's operation; a key read twice keeps its last version.
pub(super) fn sort(ctx: &Ctx, plan: &Plan, b: &mut Parts<'_>, report: &mut CycleReport) -> Sorted {
    let tz = &ctx.cfg.agent.tz;
    let fmt = plan.window.as_ref().map_or("", |w| w.format.as_str());
    let mut out = Sorted {
        pending: Vec::with_capacity(b.rows.len()),
        ..Sorted::default()
    };
    let mut newest = Newest::default();
    metrics::counter!(crate::metrics::ROWS_READ, "table" => plan.name.clone())
        .increment(b.rows.len() as u64);
    for row in std::mem::take(&mut b.rows) {
        report.read += 1;
        let Some((rkey, values, op, tuple)) = sort_row(plan, b, tz, row, &mut out, report) else {
            continue;
        };
        newest.see(plan.ts.map(|i| &values[i]), tz, fmt);
        let p = if op == Op::Delete && plan.deletes == DeleteMode::Delete {
            Pending::Delete(values)
        } else {
            Pending::Upsert(values, op, tuple)
        };
        out.pending.push((rkey, p));
    }
    out.newest = newest.instant(tz, fmt);
    let removals = !b.gone.is_empty() || !b.gone_target.is_empty();
    for (rkey, key) in std::mem::take(&mut b.gone) {
        out.pending.push((rkey, Pending::Gone(key)));
    }
    for (rkey, key) in std::mem::take(&mut b.gone_target) {
        out.pending.push((rkey, Pending::GoneTarget(key)));
    }
    // One read returns a key the source holds unique at most once.
    if !plan.unique_key || removals {
        last_of_each_key(&mut out.pending);
    }
    out
}

/// A row to send: its record key, values, operation and tuple; `None` when it is skipped
/// (unchanged since it was handled) or quarantined (into `out`).
fn sort_row(
    plan: &Plan,
    b: &Parts<'_>,
    tz: &chrono_tz::Tz,
    row: ReadRow,
    out: &mut Sorted,
    report: &mut CycleReport,
) -> Option<(String, Vec<Value>, Op, Option<Bytes>)> {
    let ReadRow {
        mut values,
        bad,
        tuple,
    } = row;
    // A row read as its tuple holds only the values the agent looks at; the others are
    // decoded where the whole row is needed (its digest, a reject).
    let mut whole = tuple.is_none();
    let key_null = plan.key.iter().any(|&i| values[i].is_null());
    let remember = match &b.remember {
        Remember::Nothing => false,
        Remember::All => true,
        Remember::Since(since) => plan
            .ts
            .is_some_and(|i| crate::watermark::cmp_values(&values[i], since).is_ge()),
    };
    if key_null || remember {
        fill(&mut values, tuple.as_ref(), &mut whole, plan);
    }
    let (rkey, mut digest, entry) = identity(plan, &values, key_null, remember);
    if let Some((d, _)) = b.seen.get(&rkey) {
        if digest.is_none() {
            fill(&mut values, tuple.as_ref(), &mut whole, plan);
            digest = Some(row_digest(&values));
        }
        if digest.as_ref() == Some(d) {
            report.skipped += 1;
            return None;
        }
    }
    if let Some((ts, kvals)) = entry {
        out.digests.push(DigestEntry {
            rkey: rkey.clone(),
            digest: digest.unwrap_or_else(|| row_digest(&values)),
            ts,
            kvals,
        });
    }
    let mut problem = match (&bad, key_null) {
        (Some(bad), _) => Some((Origin::Read, bad.clone())),
        (None, true) => {
            let names: Vec<String> = plan.key_cols().iter().map(|c| c.name.to_string()).collect();
            Some((
                Origin::Read,
                format!("key column {} is NULL", names.join(", ")),
            ))
        }
        _ => None,
    };
    let op = operation(plan, &values, b.seen.contains_key(&rkey), &mut problem);
    // Unreadable rows and unknown operations first; then the quality rules, every one.
    let (origin, reasons) = match problem {
        Some((origin, reason)) => (origin, vec![reason]),
        None => (
            Origin::Rule,
            crate::validate::failures(&plan.rules, &values, tz),
        ),
    };
    if reasons.is_empty() && origin == Origin::Rule {
        note_findings(plan, &rkey, &values, tz, report);
    }
    // Codes are translated after the rules, which check the local codes the source holds.
    let (origin, reasons) = match reasons.is_empty() && !plan.translate.is_empty() {
        true => (
            Origin::Map,
            crate::translate::apply(&plan.translate, &mut values),
        ),
        false => (origin, reasons),
    };
    if !reasons.is_empty() {
        fill(&mut values, tuple.as_ref(), &mut whole, plan);
        if plan.flag.is_some() && !key_null {
            out.flag_failed.push((values.clone(), reasons.join("; ")));
        }
        out.rejects
            .push(reject(plan, &rkey, &values, origin, reasons));
        return None;
    }
    Some((rkey, values, op, tuple))
}

/// Findings of `severity = "warn"` rules: the row is sent; each finding is logged, counted,
/// and the first few are kept for the cycle's warning in `status`.
fn note_findings(
    plan: &Plan,
    rkey: &str,
    values: &[Value],
    tz: &chrono_tz::Tz,
    report: &mut CycleReport,
) {
    let found = crate::validate::findings(&plan.rules, values, tz);
    if found.is_empty() {
        return;
    }
    report.warned += 1;
    metrics::counter!(crate::metrics::ROWS_WARNED, "table" => plan.name.clone()).increment(1);
    let text = format!("row {rkey}: {}", found.join("; "));
    tracing::warn!(table = %plan.name, "sent with a finding of a warn rule: {text}");
    if report.findings.len() < 3 {
        report.findings.push(text);
    }
}

/// What is remembered of a row: its change time (as sortable text) and its key values (JSON).
type Remembered = (Option<String>, String);

/// A row's record key, its digest where it is needed (a NULL key, a row remembered), and
/// what is remembered of it (its change time and key values).
fn identity(
    plan: &Plan,
    values: &[Value],
    key_null: bool,
    remember: bool,
) -> (String, Option<[u8; 16]>, Option<Remembered>) {
    // A one-column key (the usual) without a vector of its own for every row.
    let (one, many): ([&Value; 1], Vec<&Value>) = match plan.key.as_slice() {
        [k] => ([&values[*k]], Vec::new()),
        keys => ([&Value::Null], keys.iter().map(|&i| &values[i]).collect()),
    };
    let key: &[&Value] = if plan.key.len() == 1 { &one } else { &many };
    let digest = (key_null || remember).then(|| row_digest(values));
    let rkey = match &digest {
        Some(d) if key_null => format!("NULL:{}", hex::encode(&d[..8])),
        _ => key_text(key),
    };
    let entry = remember.then(|| {
        (
            plan.ts.map(|i| values[i].sort_text()),
            serde_json::to_string(&key).unwrap_or_default(),
        )
    });
    (rkey, digest, entry)
}

/// A row's operation: the control column's, or what the mode says. An operation that is
/// not I, U or D is the row's problem (unless it has one already).
fn operation(
    plan: &Plan,
    values: &[Value],
    seen_before: bool,
    problem: &mut Option<(Origin, String)>,
) -> Op {
    match plan.mode {
        Mode::Control => {
            let v = plan.op.map_or(&Value::Null, |i| &values[i]);
            Op::parse(v).unwrap_or_else(|| {
                let col = plan
                    .op
                    .map(|i| plan.read_cols[i].name.to_string())
                    .unwrap_or_default();
                problem.get_or_insert_with(|| {
                    (
                        Origin::Map,
                        format!(
                            "operation `{}` in column {col} is not I, U or D",
                            v.to_text()
                        ),
                    )
                });
                Op::Update
            })
        }
        Mode::Key => Op::Insert,
        Mode::Digest if seen_before => Op::Update,
        Mode::Digest => Op::Insert,
        Mode::Timestamp | Mode::Flag => Op::Update,
    }
}

/// The newest change time of a batch's rows: compared as values, made an instant once
/// (text times, whose order need not be their text's, each).
#[derive(Default)]
struct Newest {
    value: Option<Value>,
    text: Option<DateTime<Utc>>,
}

impl Newest {
    fn see(&mut self, v: Option<&Value>, tz: &chrono_tz::Tz, fmt: &str) {
        match v {
            Some(Value::Text(_)) | None => {
                if let Some(t) = v.and_then(|v| v.instant(tz, fmt)) {
                    self.text = Some(self.text.map_or(t, |n| n.max(t)));
                }
            }
            Some(v) => {
                if !v.is_null()
                    && self
                        .value
                        .as_ref()
                        .is_none_or(|n| crate::watermark::cmp_values(v, n).is_gt())
                {
                    self.value = Some(v.clone());
                }
            }
        }
    }

    fn instant(self, tz: &chrono_tz::Tz, fmt: &str) -> Option<DateTime<Utc>> {
        let value = self.value.and_then(|v| v.instant(tz, fmt));
        match (value, self.text) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Keep only the last of the entries that share a record key (a key read twice keeps its
/// last version).
pub(super) fn last_of_each_key(pending: &mut Vec<(String, Pending)>) {
    let mut last: HashMap<&str, usize> = HashMap::with_capacity(pending.len());
    for (i, (rkey, _)) in pending.iter().enumerate() {
        last.insert(rkey.as_str(), i);
    }
    if last.len() == pending.len() {
        return;
    }
    let keep: Vec<bool> = pending
        .iter()
        .enumerate()
        .map(|(i, (rkey, _))| last.get(rkey.as_str()) == Some(&i))
        .collect();
    let mut flags = keep.into_iter();
    pending.retain(|_| flags.next().unwrap_or(true));
}
