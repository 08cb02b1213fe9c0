//! Building a table's plan step by step: its key, its watermark columns, the columns it
//! exchanges and the rules it checks, then what the exchange table adds (constants, feedback
//! flags, control columns), the exchange key, the version, and tombstones. Each step notes
//! every mismatch; the plan is built only when there is none.

use std::sync::Arc;

use super::{FlagPlan, Mode, Plan};
use crate::config::{Config, DeleteMode, Direction, TableSpec, WatermarkSpec, Window};
use crate::ctx::Ends;
use crate::db::TableSchema;
use crate::db::dialect::Dialect;
use crate::ident::{Col, Ident};
use crate::mapping::{Mapping, Source, holds_text};
use crate::sink::Target;
use crate::typefit::Verdict;
use crate::value::Value;

mod shaping;

/// The plan being built: both tables, what is read, what is written, and what is wrong.
struct Builder<'a> {
    spec: &'a TableSpec,
    src: &'a TableSchema,
    tgt: &'a TableSchema,
    cfg: &'a Config,
    problems: Vec<String>,
    /// Source columns read, in order.
    read_cols: Vec<Col>,
    /// Exchange columns written, and where each one's value comes from.
    m_cols: Vec<Col>,
    m_src: Vec<Source>,
    /// Exchange columns the database computes, left for it to fill (all of them, whether a
    /// source column of the same name exists or not).
    computed: Vec<String>,
}

/// What the watermark reads, besides the key.
struct Watermarked {
    mode: Mode,
    ts: Option<Col>,
    op: Option<Col>,
    flag: Option<FlagPlan>,
    window: Option<Window>,
}

impl Plan {
    /// Build the plan, or say everything that does not fit.
    pub fn build(
        spec: &TableSpec,
        src: &TableSchema,
        tgt: &TableSchema,
        cfg: &Config,
        ends: Ends,
    ) -> Result<Plan, Vec<String>> {
        let caps = ends.sink.capabilities();
        let marks = marks(cfg, ends.direction);
        let mut b = Builder {
            spec,
            src,
            tgt,
            cfg,
            problems: Vec::new(),
            read_cols: Vec::new(),
            m_cols: Vec::new(),
            m_src: Vec::new(),
            computed: tgt.computed.iter().map(ToString::to_string).collect(),
        };
        let (key_names, key_src) = b.key();
        let w = b.watermark();
        let unexchanged = b.exchanged_columns(&key_src, w.flag.as_ref());
        let key_read: Vec<usize> = key_src.iter().flatten().map(|c| b.read(c)).collect();
        let ts_read = w.ts.as_ref().map(|c| b.read(c));
        let op_read = w.op.as_ref().map(|c| b.read(c));
        let rules = b.rules();
        let translate = b.translate();
        b.constants();
        b.arrival_flag();
        if ends.direction == Direction::Up {
            b.feedback_flags();
            b.full_column();
        }
        let has_op = b.control_columns(w.mode);
        let m_key = b.exchange_key(&key_read);
        let version = b.version(ts_read);
        b.check_tombstones(w.mode, has_op);
        b.check_masks(&key_src, version);
        let scope = b.scope();
        let (convs, type_notes) = b.type_fits(ends.read.dialect(), ends.sink.dialect());
        if !b.problems.is_empty() {
            return Err(worded(b.problems, ends.direction));
        }
        let tombstone = b.tombstone();
        let read_masks = b.read_masks();
        let mut mapping = Mapping::new(
            b.m_cols.clone(),
            b.m_src.clone(),
            m_key.clone(),
            version,
            caps.text_without_nul,
        );
        mapping.mask(&read_masks);
        mapping.convert_types(convs);
        let out = Arc::new(Target {
            table: tgt.name.clone(),
            columns: b.m_cols.clone(),
            key: m_key.clone(),
            version,
            tombstone: tombstone.clone(),
        });
        Ok(Plan {
            name: spec.name.clone(),
            ends,
            source: src.name.clone(),
            target: tgt.name.clone(),
            out,
            mode: w.mode,
            read_cols: b.read_cols,
            key: key_read,
            ts: ts_read,
            op: op_read,
            flag: w.flag,
            window: w.window,
            mapping,
            read_masks,
            scope,
            deletes: spec.deletes,
            tombstone,
            batch_size: caps
                .max_rows
                .map_or(spec.batch_size, |m| spec.batch_size.min(m)),
            batch_bytes: spec.batch_bytes,
            unexchanged,
            computed: b.computed,
            type_notes,
            rules,
            translate,
            sweep: Default::default(),
            extras: Default::default(),
            // The first cycle asks the source afresh.
            woken: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true)),
            tuples: None,
            marks,
            pull: None,
            unique_key: src.has_unique(&key_names),
            row_xids: src.row_xids,
            narrow_reject_copy: cfg.agent.narrow_reject_copy,
        })
    }
}

/// The body field that marks a full resync's batches, for tables going up.
fn marks(cfg: &Config, direction: Direction) -> Option<super::Marks> {
    let r = &cfg.resync;
    match (&r.full_field, direction) {
        (Some(f), Direction::Up) => Some(super::Marks {
            field: f.clone(),
            full: r.full_value.clone(),
            increment: r.increment_value.clone(),
        }),
        _ => None,
    }
}

/// The problems in the words of the table's direction: a `down` table's source table is at
/// the exchange and its target at the front-end.
fn worded(problems: Vec<String>, direction: Direction) -> Vec<String> {
    match direction {
        Direction::Up => problems,
        Direction::Down => problems
            .into_iter()
            .map(|p| {
                p.replace("exchange table", "front-end table")
                    .replace("source table", "exchange table")
                    .replace("exchange column", "front-end column")
            })
            .collect(),
    }
}

impl Builder<'_> {
    /// A column of the source table, or a problem naming it.
    fn src_col(&mut self, what: &str, name: &Ident) -> Option<Col> {
        let c = self.src.column(name).cloned();
        if c.is_none() {
            self.problems.push(format!(
                "{what} `{name}` is not a column of source table {}",
                self.src.name
            ));
        }
        c
    }

    /// Read a source column (once): its index among the columns read.
    fn read(&mut self, c: &Col) -> usize {
        match self.read_cols.iter().position(|r| r.name == c.name) {
            Some(i) => i,
            None => {
                self.read_cols.push(c.clone());
                self.read_cols.len() - 1
            }
        }
    }

    /// The exchange column of this name that is already written, if any.
    fn written(&self, name: &Ident) -> Option<usize> {
        self.m_cols.iter().position(|m| m.name == *name)
    }

    /// Write exchange column `c` from `from`, unless the database computes it.
    fn write(&mut self, c: &Col, from: Source) {
        if self.tgt.is_computed(&c.name) {
            return;
        }
        self.m_cols.push(c.clone());
        self.m_src.push(from);
    }

    /// The key: configured, or the source's primary key.
    fn key(&mut self) -> (Vec<Ident>, Vec<Option<Col>>) {
        let names: Vec<Ident> = match &self.spec.key {
            Some(k) => k.clone(),
            None => self.src.primary_key.clone(),
        };
        if names.is_empty() {
            self.problems.push(format!(
                "source table {} has no primary key: set `key = [\"...\"]` for this table",
                self.src.name
            ));
        }
        let cols = names
            .iter()
            .map(|k| self.src_col("key column", k))
            .collect();
        (names, cols)
    }

    /// The columns the watermark reads.
    fn watermark(&mut self) -> Watermarked {
        let none = |mode| Watermarked {
            mode,
            ts: None,
            op: None,
            flag: None,
            window: None,
        };
        let w = match &self.spec.watermark {
            WatermarkSpec::Key => none(Mode::Key),
            WatermarkSpec::Digest => none(Mode::Digest),
            WatermarkSpec::Timestamp { column, window } => Watermarked {
                ts: self.src_col("watermark column", column),
                window: Some(window.clone()),
                ..none(Mode::Timestamp)
            },
            WatermarkSpec::Control { time, op, window } => Watermarked {
                ts: self.src_col("control time column", time),
                op: self.src_col("control operation column", op),
                window: Some(window.clone()),
                ..none(Mode::Control)
            },
            WatermarkSpec::Flag {
                column,
                pending,
                done,
                failed,
                error_column,
            } => {
                let c = self.src_col("flag column", column);
                let e = error_column
                    .as_ref()
                    .and_then(|e| self.src_col("flag error column", e));
                Watermarked {
                    flag: c.map(|col| FlagPlan {
                        col,
                        error: e,
                        pending: pending.clone(),
                        done: done.clone(),
                        failed: failed.clone(),
                    }),
                    ..none(Mode::Flag)
                }
            }
        };
        if let Some(c) = &w.ts
            && !c.ty.is_time_like()
        {
            self.problems.push(format!(
                "watermark column `{}` of source table {} is `{}`; a time watermark needs a \
                 date, timestamp or text column",
                c.name, self.src.name, c.native
            ));
        }
        w
    }

    /// The source columns exchanged, each into the exchange column of its name (or its
    /// rename); returns those that have no exchange column and are left out.
    fn exchanged_columns(&mut self, key: &[Option<Col>], flag: Option<&FlagPlan>) -> Vec<String> {
        // A flag table's own flag and error columns are not exchanged unless listed.
        let internal: Vec<&Ident> = flag
            .iter()
            .flat_map(|f| std::iter::once(&f.col.name).chain(f.error.as_ref().map(|e| &e.name)))
            .collect();
        let (candidates, explicit): (Vec<Col>, bool) = match &self.spec.columns {
            Some(list) => (
                list.iter()
                    .filter_map(|n| self.src_col("column", n))
                    .collect(),
                true,
            ),
            None => (
                self.src
                    .columns
                    .iter()
                    .filter(|c| !internal.contains(&&c.name))
                    .cloned()
                    .collect(),
                false,
            ),
        };
        for from in self.spec.rename.keys() {
            if self.src.column(from).is_none() {
                self.problems.push(format!(
                    "rename: `{from}` is not a column of source table {}",
                    self.src.name
                ));
            }
        }
        let is_key = |c: &Col| key.iter().flatten().any(|k| k.name == c.name);
        let mut unexchanged = Vec::new();
        for c in &candidates {
            let renamed = self
                .spec
                .rename
                .iter()
                .find(|(f, _)| f.as_str().eq_ignore_ascii_case(c.name.as_str()))
                .map(|(_, t)| t.clone());
            let wanted = renamed.clone().unwrap_or_else(|| c.name.clone());
            match self.tgt.column(&wanted) {
                Some(tc) if is_key(c) && self.tgt.is_computed(&tc.name) => {
                    self.problems.push(format!(
                        "exchange column `{}` of exchange table {} is computed by the database \
                         (a generated column or an identity GENERATED ALWAYS), and key column \
                         `{}` is written into it: make it a plain column (or GENERATED BY \
                         DEFAULT AS IDENTITY)",
                        tc.name, self.tgt.name, c.name
                    ));
                }
                Some(tc) if self.tgt.is_computed(&tc.name) => {
                    self.write(tc, Source::Constant(Value::Null))
                }
                Some(tc) => {
                    let i = self.read(c);
                    self.write(tc, Source::Column(i));
                }
                None if explicit || renamed.is_some() || is_key(c) => self.problems.push(format!(
                    "exchange table {} has no column `{wanted}` for source column `{}`",
                    self.tgt.name, c.name
                )),
                None => unexchanged.push(c.name.to_string()),
            }
        }
        unexchanged
    }

    /// The translated columns, each with its place among the columns read.
    fn translate(&mut self) -> Vec<crate::translate::Translate> {
        let mut out = Vec::new();
        for t in &self.spec.translate {
            let Some(c) = self.src_col("translate column", &t.column) else {
                continue;
            };
            out.push(crate::translate::Translate {
                column: c.name.to_string(),
                index: self.read(&c),
                pairs: t.pairs.clone(),
                pass_unknown: t.pass_unknown,
            });
        }
        out
    }

    /// The quality rules, each with the columns it reads.
    fn rules(&mut self) -> Vec<crate::validate::Rule> {
        let mut rules = Vec::new();
        for r in &self.spec.rules {
            let Some(c) = self.src_col(&format!("rule {} column", r.id), &r.column) else {
                continue;
            };
            let index = self.read(&c);
            let other = match &r.check {
                crate::validate::Check::Compare { other, .. } => match self.src.column(other) {
                    Some(o) => Some((self.read(o), o.name.to_string())),
                    None => {
                        self.problems.push(format!(
                            "rule {} compares with a column: `{other}` is not a column of source \
                             table {}",
                            r.id, self.src.name
                        ));
                        continue;
                    }
                },
                _ => None,
            };
            rules.push(crate::validate::Rule {
                id: r.id.clone(),
                column: c.name.to_string(),
                index,
                other,
                check: r.check.clone(),
                message: r.message.clone(),
                mask: self.mask_of(&c.name),
                other_mask: match &r.check {
                    crate::validate::Check::Compare { other, .. } => self.mask_of(other),
                    _ => None,
                },
                warn: r.warn,
            });
        }
        rules
    }

    /// Exchange columns given a constant.
    fn constants(&mut self) {
        for (name, v) in &self.spec.constants {
            match self.tgt.column(name) {
                Some(tc) if self.written(&tc.name).is_some() => self.problems.push(format!(
                    "constant `{name}`: exchange column {} is already filled from the source",
                    tc.name
                )),
                Some(tc) if self.tgt.is_computed(&tc.name) => self.problems.push(format!(
                    "constant `{name}`: exchange column {} is computed by the database \
                     (a generated column or an identity GENERATED ALWAYS) and takes no value",
                    tc.name
                )),
                Some(tc) => self.write(tc, Source::Constant(v.clone())),
                None => self.problems.push(format!(
                    "constant `{name}` is not a column of exchange table {}",
                    self.tgt.name
                )),
            }
        }
    }

    /// A `down` table's arrival flag: every row written gets its value, whatever the exchange
    /// row held in a column of that name, so that the business system sees it arrived.
    fn arrival_flag(&mut self) {
        let Some(f) = &self.spec.arrival else { return };
        match self.tgt.column(&f.column) {
            Some(tc) => match self.written(&tc.name) {
                Some(i) => self.m_src[i] = Source::Constant(f.value.clone()),
                None => self.write(tc, Source::Constant(f.value.clone())),
            },
            None => self.problems.push(format!(
                "arrival_flag: `{}` is not a column of exchange table {}",
                f.column, self.tgt.name
            )),
        }
    }

    /// The exchange column that says whether a row came in a full resync or an increment,
    /// where the exchange table has it.
    fn full_column(&mut self) {
        let Some(name) = &self.cfg.resync.full_column else {
            return;
        };
        if let Some(tc) = self.tgt.column(name) {
            match self.written(&tc.name) {
                Some(i) => self.m_src[i] = Source::Full,
                None => self.write(tc, Source::Full),
            }
        }
    }

    /// With in-row feedback flags, every row sent is marked for the province to check.
    fn feedback_flags(&mut self) {
        let fb = &self.cfg.feedback;
        if fb.kind != crate::config::FeedbackKind::Flag {
            return;
        }
        for (name, v) in [
            (&fb.flag_column, fb.pending.clone()),
            (&fb.error_column, Value::Null),
        ] {
            if let Some(tc) = self.tgt.column(name)
                && self.written(&tc.name).is_none()
            {
                self.write(tc, Source::Constant(v));
            }
        }
    }

    /// The control columns the exchange table has and the source does not fill; whether the
    /// operation is among the columns written.
    fn control_columns(&mut self, mode: Mode) -> bool {
        let cc = &self.cfg.exchange.control;
        let agent = &self.cfg.agent;
        let origin = agent.region_code.is_some() && agent.department_code.is_some();
        let mut has_op = false;
        for (name, generated) in [
            (&cc.operation, Source::Operation),
            (&cc.time, Source::ExchangeTime),
            (&cc.batch, Source::Batch),
            (&cc.source, Source::Origin),
        ] {
            let Some(tc) = self.tgt.column(name) else {
                continue;
            };
            let is_op = generated == Source::Operation;
            match self.written(&tc.name) {
                Some(i) if is_op && mode == Mode::Control => {
                    self.m_src[i] = Source::Operation;
                    has_op = true;
                }
                Some(_) => has_op |= is_op,
                None if generated == Source::Origin && !origin => {}
                None => {
                    if is_op && !holds_text(tc.ty) {
                        self.problems.push(format!(
                            "operation column {} of exchange table {} is `{}`; it must hold text",
                            tc.name, self.tgt.name, tc.native
                        ));
                    }
                    has_op |= is_op;
                    self.write(tc, generated);
                }
            }
        }
        has_op
    }

    /// The exchange columns of the key (indexes into the columns written), which a unique
    /// constraint of the exchange table must cover.
    fn exchange_key(&mut self, key_read: &[usize]) -> Vec<usize> {
        let m_key: Vec<usize> = key_read
            .iter()
            .filter_map(|r| self.m_src.iter().position(|s| *s == Source::Column(*r)))
            .collect();
        let names: Vec<Ident> = m_key.iter().map(|&i| self.m_cols[i].name.clone()).collect();
        if !names.is_empty() && !self.tgt.has_unique(&names) {
            self.problems.push(format!(
                "exchange table {} has no primary key or unique index on ({}): the agent \
                 writes by key and needs one",
                self.tgt.name,
                names
                    .iter()
                    .map(Ident::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        m_key
    }

    /// The version column (newer rows win): configured, or the change time.
    fn version(&mut self, ts_read: Option<usize>) -> Option<usize> {
        match &self.spec.version_column {
            Some(v) => {
                let i = self.tgt.column(v).and_then(|tc| self.written(&tc.name));
                if i.is_none() {
                    self.problems.push(format!(
                        "version_column `{v}` is not an exchanged column of exchange table {}",
                        self.tgt.name
                    ));
                }
                i
            }
            None => ts_read.and_then(|r| self.m_src.iter().position(|s| *s == Source::Column(r))),
        }
    }

    /// Tombstones need rows that carry their operation, and a column to mark.
    fn check_tombstones(&mut self, mode: Mode, has_op: bool) {
        if self.spec.deletes != DeleteMode::Tombstone {
            return;
        }
        if mode != Mode::Control {
            self.problems.push(
                "deletes = \"tombstone\" needs a control watermark (rows carrying operation D)"
                    .into(),
            );
        } else if !has_op {
            self.problems.push(format!(
                "deletes = \"tombstone\" needs the operation column `{}` in exchange table {}",
                self.cfg.exchange.control.operation, self.tgt.name
            ));
        }
    }

    /// How each exchange column fed from a source column holds its values: a conversion
    /// per exchange column, and the narrowing ones in words; a pair that holds no value is a
    /// problem. Only between two databases (another sink's columns are the source's).
    fn type_fits(
        &mut self,
        read: Dialect,
        write: Option<Dialect>,
    ) -> (Vec<Option<crate::typefit::Conv>>, Vec<String>) {
        let mut convs = vec![None; self.m_cols.len()];
        let mut notes = Vec::new();
        let Some(write) = write else {
            return (convs, notes);
        };
        for (i, (tc, s)) in self.m_cols.iter().zip(&self.m_src).enumerate() {
            let Source::Column(j) = s else { continue };
            let fit = crate::typefit::fit(&self.read_cols[*j], read, tc, write);
            match fit.verdict {
                Verdict::Exact => {}
                Verdict::Narrow(n) => notes.push(n),
                Verdict::Refused(r) => self.problems.push(r),
            }
            convs[i] = fit.conv;
        }
        (convs, notes)
    }

    /// The columns a tombstone sets in place: the operation, times and batch number.
    fn tombstone(&self) -> Vec<usize> {
        if self.spec.deletes != DeleteMode::Tombstone {
            return Vec::new();
        }
        let time = &self.cfg.exchange.control.time;
        let arrival = self.spec.arrival.as_ref().map(|f| &f.column);
        self.m_cols
            .iter()
            .zip(&self.m_src)
            .enumerate()
            .filter(|(_, (c, s))| {
                matches!(
                    s,
                    Source::Operation | Source::ExchangeTime | Source::Batch | Source::Full
                ) || c.name == *time
                    || arrival.is_some_and(|a| c.name == *a)
            })
            .map(|(i, _)| i)
            .collect()
    }
}
