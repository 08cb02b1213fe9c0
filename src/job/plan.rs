//! A table's plan: the configuration resolved against both catalogs — which columns are
//! read, which is the key, the change column, and the mapping to the exchange table. Every
//! mismatch is reported in words that name the table and the column.

use crate::config::{Config, DeleteMode, TableSpec, WatermarkSpec, Window};
use crate::db::TableSchema;
use crate::db::dialect::Dialect;
use crate::ident::Col;
use crate::ident::{Ident, TableName};
use crate::mapping::{Mapping, Source, holds_text};
use crate::value::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Key,
    Timestamp,
    Control,
    Flag,
    Digest,
}

#[derive(Clone, Debug)]
pub struct FlagPlan {
    pub col: Col,
    pub error: Option<Col>,
    pub pending: Value,
    pub done: Value,
    pub failed: Value,
}

#[derive(Clone, Debug)]
pub struct Plan {
    pub name: String,
    pub source: TableName,
    pub target: TableName,
    pub mode: Mode,
    /// Source columns read, in order.
    pub read_cols: Vec<Col>,
    /// Indexes into `read_cols`.
    pub key: Vec<usize>,
    pub ts: Option<usize>,
    pub op: Option<usize>,
    pub flag: Option<FlagPlan>,
    pub window: Option<Window>,
    pub mapping: Mapping,
    pub deletes: DeleteMode,
    /// With tombstones: indexes into the mapping's columns that a tombstone sets in place
    /// (operation, times, batch number) for a row gone from the source.
    pub tombstone: Vec<usize>,
    pub batch_size: usize,
    pub batch_bytes: usize,
    /// Source columns that have no exchange column and are therefore not sent.
    pub unexchanged: Vec<String>,
    /// Quality rules, resolved against `read_cols`.
    pub rules: Vec<crate::validate::Rule>,
    /// Timestamp-like tables: the last full re-read of the lookback window.
    pub sweep: std::sync::Arc<std::sync::Mutex<Sweep>>,
    /// PostgreSQL to PostgreSQL, column for column, with the very same types: rows are read
    /// as binary `COPY` tuples and written to the exchange as they came, decoding only the
    /// columns marked here (key, change time, operation, version, rules). See
    /// [`Plan::pass_through`].
    pub tuples: Option<Vec<bool>>,
    /// The source holds the key unique: one read returns each key at most once.
    pub unique_key: bool,
    /// The source's rows carry the id of the transaction that wrote them (a PostgreSQL
    /// table): a lookback re-read asks only for rows of transactions the last one could
    /// not see.
    pub row_xids: bool,
}

/// When a timestamp-like table last re-read its whole lookback window, and the watermark's
/// time when that re-read started (the next one reaches back `lookback` from it).
#[derive(Debug, Default)]
pub struct Sweep {
    pub at: Option<std::time::Instant>,
    pub from: Option<Value>,
}

impl Plan {
    pub fn key_cols(&self) -> Vec<Col> {
        self.key
            .iter()
            .map(|&i| self.read_cols[i].clone())
            .collect()
    }

    /// Read rows as tuples and pass them on as they are ([`Plan::tuples`]) when nothing
    /// happens to a row on its way but being looked at: both databases are PostgreSQL, every
    /// exchange column is the source column of the same place and of the very same type, no
    /// constant or control column is added, and the mode needs no whole row per row (flag
    /// tables set their flags by every value read; digest tables digest every row).
    pub fn pass_through(&mut self, source: Dialect, target: Dialect) {
        let whole_rows = matches!(self.mode, Mode::Flag | Mode::Digest);
        if source != Dialect::Postgres
            || target != Dialect::Postgres
            || whole_rows
            || !self.mapping.is_identity()
            || !crate::db::same_binary_form(&self.read_cols, &self.mapping.columns)
        {
            self.tuples = None;
            return;
        }
        let mut decode = vec![false; self.read_cols.len()];
        let looked_at = self
            .key
            .iter()
            .chain(&self.ts)
            .chain(&self.op)
            .chain(&self.mapping.version)
            .copied()
            .chain(
                self.rules
                    .iter()
                    .flat_map(|r| std::iter::once(r.index).chain(r.other.as_ref().map(|o| o.0))),
            );
        for i in looked_at {
            if let Some(d) = decode.get_mut(i) {
                *d = true;
            }
        }
        self.tuples = Some(decode);
    }

    /// Build the plan, or say everything that does not fit.
    pub fn build(
        spec: &TableSpec,
        src: &TableSchema,
        tgt: &TableSchema,
        cfg: &Config,
        target: Dialect,
    ) -> Result<Plan, Vec<String>> {
        let mut problems = Vec::new();
        let s_name = &src.name;
        let t_name = &tgt.name;
        let src_col = |what: &str, name: &Ident, problems: &mut Vec<String>| {
            let c = src.column(name).cloned();
            if c.is_none() {
                problems.push(format!(
                    "{what} `{name}` is not a column of source table {s_name}"
                ));
            }
            c
        };

        // Key.
        let key_names: Vec<Ident> = match &spec.key {
            Some(k) => k.clone(),
            None => src.primary_key.clone(),
        };
        if key_names.is_empty() {
            problems.push(format!(
                "source table {s_name} has no primary key: set `key = [\"...\"]` for this table"
            ));
        }
        let key_src: Vec<Option<Col>> = key_names
            .iter()
            .map(|k| src_col("key column", k, &mut problems))
            .collect();

        // Watermark columns.
        let (mode, ts, op, flag, window) = match &spec.watermark {
            WatermarkSpec::Key => (Mode::Key, None, None, None, None),
            WatermarkSpec::Digest => (Mode::Digest, None, None, None, None),
            WatermarkSpec::Timestamp { column, window } => {
                let c = src_col("watermark column", column, &mut problems);
                (Mode::Timestamp, c, None, None, Some(window.clone()))
            }
            WatermarkSpec::Control { time, op, window } => {
                let t = src_col("control time column", time, &mut problems);
                let o = src_col("control operation column", op, &mut problems);
                (Mode::Control, t, o, None, Some(window.clone()))
            }
            WatermarkSpec::Flag {
                column,
                pending,
                done,
                failed,
                error_column,
            } => {
                let c = src_col("flag column", column, &mut problems);
                let e = error_column
                    .as_ref()
                    .and_then(|e| src_col("flag error column", e, &mut problems));
                let f = c.map(|col| FlagPlan {
                    col,
                    error: e,
                    pending: pending.clone(),
                    done: done.clone(),
                    failed: failed.clone(),
                });
                (Mode::Flag, None, None, f, None)
            }
        };
        if let Some(c) = &ts
            && !c.ty.is_time_like()
        {
            problems.push(format!(
                "watermark column `{}` of source table {s_name} is `{}`; a time watermark needs a \
                 date, timestamp or text column",
                c.name, c.native
            ));
        }

        // Exchanged source columns.
        let internal: Vec<&Ident> = flag
            .iter()
            .flat_map(|f| std::iter::once(&f.col.name).chain(f.error.as_ref().map(|e| &e.name)))
            .collect();
        let (candidates, explicit): (Vec<Col>, bool) = match &spec.columns {
            Some(list) => (
                list.iter()
                    .filter_map(|n| src_col("column", n, &mut problems))
                    .collect(),
                true,
            ),
            None => (
                src.columns
                    .iter()
                    .filter(|c| !internal.contains(&&c.name))
                    .cloned()
                    .collect(),
                false,
            ),
        };
        for from in spec.rename.keys() {
            if src.column(from).is_none() {
                problems.push(format!(
                    "rename: `{from}` is not a column of source table {s_name}"
                ));
            }
        }
        let mut read_cols: Vec<Col> = Vec::new();
        let mut m_cols: Vec<Col> = Vec::new();
        let mut m_src: Vec<Source> = Vec::new();
        let mut unexchanged = Vec::new();
        let add_read = |c: &Col, read_cols: &mut Vec<Col>| -> usize {
            match read_cols.iter().position(|r| r.name == c.name) {
                Some(i) => i,
                None => {
                    read_cols.push(c.clone());
                    read_cols.len() - 1
                }
            }
        };
        let is_key = |c: &Col| key_src.iter().flatten().any(|k| k.name == c.name);
        for c in &candidates {
            let renamed = spec
                .rename
                .iter()
                .find(|(f, _)| f.as_str().eq_ignore_ascii_case(c.name.as_str()))
                .map(|(_, t)| t.clone());
            let wanted = renamed.clone().unwrap_or_else(|| c.name.clone());
            match tgt.column(&wanted) {
                Some(tc) => {
                    let i = add_read(c, &mut read_cols);
                    m_cols.push(tc.clone());
                    m_src.push(Source::Column(i));
                }
                None if explicit || renamed.is_some() || is_key(c) => problems.push(format!(
                    "exchange table {t_name} has no column `{wanted}` for source column `{}`",
                    c.name
                )),
                None => unexchanged.push(c.name.to_string()),
            }
        }
        let key_read: Vec<usize> = key_src
            .iter()
            .flatten()
            .map(|c| add_read(c, &mut read_cols))
            .collect();
        let ts_read = ts.as_ref().map(|c| add_read(c, &mut read_cols));
        let op_read = op.as_ref().map(|c| add_read(c, &mut read_cols));
        let mut rules = Vec::new();
        for r in &spec.rules {
            let what = format!("rule {} column", r.id);
            let Some(c) = src_col(&what, &r.column, &mut problems) else {
                continue;
            };
            let index = add_read(&c, &mut read_cols);
            let other = match &r.check {
                crate::validate::Check::Compare { other, .. } => {
                    let what = format!("rule {} compares with a column: `{other}`", r.id);
                    match src.column(other) {
                        Some(o) => Some((add_read(o, &mut read_cols), o.name.to_string())),
                        None => {
                            problems
                                .push(format!("{what} is not a column of source table {s_name}"));
                            continue;
                        }
                    }
                }
                _ => None,
            };
            rules.push(crate::validate::Rule {
                id: r.id.clone(),
                column: c.name.to_string(),
                index,
                other,
                check: r.check.clone(),
                message: r.message.clone(),
            });
        }

        // Constants.
        for (name, v) in &spec.constants {
            match tgt.column(name) {
                Some(tc) if m_cols.iter().any(|m| m.name == tc.name) => problems.push(format!(
                    "constant `{name}`: exchange column {} is already filled from the source",
                    tc.name
                )),
                Some(tc) => {
                    m_cols.push(tc.clone());
                    m_src.push(Source::Constant(v.clone()));
                }
                None => problems.push(format!(
                    "constant `{name}` is not a column of exchange table {t_name}"
                )),
            }
        }

        // With in-row feedback flags, every row sent is marked for the province to check.
        if cfg.feedback.kind == crate::config::FeedbackKind::Flag {
            let fb = &cfg.feedback;
            for (name, v) in [
                (&fb.flag_column, fb.pending.clone()),
                (&fb.error_column, Value::Null),
            ] {
                if let Some(tc) = tgt.column(name)
                    && !m_cols.iter().any(|m| m.name == tc.name)
                {
                    m_cols.push(tc.clone());
                    m_src.push(Source::Constant(v));
                }
            }
        }

        // Control columns the exchange table has and the source does not fill.
        let cc = &cfg.exchange.control;
        let origin = cfg.agent.region_code.is_some() && cfg.agent.department_code.is_some();
        let mut has_op = false;
        for (name, generated) in [
            (&cc.operation, Source::Operation),
            (&cc.time, Source::ExchangeTime),
            (&cc.batch, Source::Batch),
            (&cc.source, Source::Origin),
        ] {
            let Some(tc) = tgt.column(name) else { continue };
            let is_op = generated == Source::Operation;
            match m_cols.iter().position(|m| m.name == tc.name) {
                Some(i) if is_op && mode == Mode::Control => {
                    m_src[i] = Source::Operation;
                    has_op = true;
                }
                Some(_) => has_op |= is_op,
                None if generated == Source::Origin && !origin => {}
                None => {
                    if is_op && !holds_text(tc.ty) {
                        problems.push(format!(
                            "operation column {} of exchange table {t_name} is `{}`; it must hold text",
                            tc.name, tc.native
                        ));
                    }
                    has_op |= is_op;
                    m_cols.push(tc.clone());
                    m_src.push(generated);
                }
            }
        }

        // Exchange key and version.
        let m_key: Vec<usize> = key_read
            .iter()
            .filter_map(|r| m_src.iter().position(|s| *s == Source::Column(*r)))
            .collect();
        let key_targets: Vec<Ident> = m_key.iter().map(|&i| m_cols[i].name.clone()).collect();
        if !key_targets.is_empty() && !tgt.has_unique(&key_targets) {
            problems.push(format!(
                "exchange table {t_name} has no primary key or unique index on ({}): the agent \
                 writes by key and needs one",
                key_targets
                    .iter()
                    .map(Ident::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let version = match &spec.version_column {
            Some(v) => {
                let i = tgt
                    .column(v)
                    .and_then(|tc| m_cols.iter().position(|m| m.name == tc.name));
                if i.is_none() {
                    problems.push(format!(
                        "version_column `{v}` is not an exchanged column of exchange table {t_name}"
                    ));
                }
                i
            }
            None => ts_read.and_then(|r| m_src.iter().position(|s| *s == Source::Column(r))),
        };
        if spec.deletes == DeleteMode::Tombstone {
            if mode != Mode::Control {
                problems.push(
                    "deletes = \"tombstone\" needs a control watermark (rows carrying operation D)"
                        .into(),
                );
            } else if !has_op {
                problems.push(format!(
                    "deletes = \"tombstone\" needs the operation column `{}` in exchange table {t_name}",
                    cc.operation
                ));
            }
        }

        if !problems.is_empty() {
            return Err(problems);
        }
        let tombstone = if spec.deletes == DeleteMode::Tombstone {
            m_cols
                .iter()
                .zip(&m_src)
                .enumerate()
                .filter(|(_, (c, s))| {
                    matches!(s, Source::Operation | Source::ExchangeTime | Source::Batch)
                        || c.name == cc.time
                })
                .map(|(i, _)| i)
                .collect()
        } else {
            Vec::new()
        };
        Ok(Plan {
            name: spec.name.clone(),
            source: src.name.clone(),
            target: tgt.name.clone(),
            mode,
            read_cols,
            key: key_read,
            ts: ts_read,
            op: op_read,
            flag,
            window,
            mapping: Mapping::new(m_cols, m_src, m_key, version, target),
            deletes: spec.deletes,
            tombstone,
            batch_size: spec.batch_size,
            batch_bytes: spec.batch_bytes,
            unexchanged,
            rules,
            sweep: Default::default(),
            tuples: None,
            unique_key: src.has_unique(&key_names),
            row_xids: src.row_xids,
        })
    }
}
