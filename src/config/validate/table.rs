//! A table's section: its watermark, its windows and every key of `[[table]]`.

use super::*;

impl V<'_> {
    fn window(
        &mut self,
        p: &str,
        lookback: Option<String>,
        lag: Option<String>,
        format: Option<String>,
    ) -> Window {
        let format = format.unwrap_or_else(|| DEFAULT_TEXT_TIME_FORMAT.into());
        let probe = chrono::NaiveDate::from_ymd_opt(2024, 1, 2)
            .and_then(|d| d.and_hms_micro_opt(3, 4, 5, 6))
            .map(|t| t.format(&format).to_string());
        let round_trip = probe
            .as_deref()
            .and_then(|s| chrono::NaiveDateTime::parse_from_str(s, &format).ok());
        if round_trip.is_none() {
            self.err(
                format!("{p}.format"),
                format!("`{format}` is not a usable date-time format (chrono syntax, e.g. %Y-%m-%d %H:%M:%S)"),
            );
        }
        Window {
            lookback: self.duration(
                &format!("{p}.lookback"),
                lookback.as_deref(),
                DEFAULT_LOOKBACK,
            ),
            lag: self.duration(&format!("{p}.lag"), lag.as_deref(), Duration::ZERO),
            format,
        }
    }

    fn watermark(&mut self, p: &str, w: RawWatermark) -> Option<WatermarkSpec> {
        Some(match w {
            RawWatermark::Key => WatermarkSpec::Key,
            RawWatermark::Digest => WatermarkSpec::Digest,
            RawWatermark::Timestamp {
                column,
                lookback,
                lag,
                format,
            } => {
                let window = self.window(p, lookback, lag, format);
                WatermarkSpec::Timestamp {
                    column: self.ident(&format!("{p}.column"), &column)?,
                    window,
                }
            }
            RawWatermark::Control {
                time,
                op,
                lookback,
                lag,
                format,
            } => {
                let window = self.window(p, lookback, lag, format);
                let time = self.ident(&format!("{p}.time"), time.as_deref().unwrap_or("cd_time"));
                let op = self.ident(&format!("{p}.op"), op.as_deref().unwrap_or("cd_operation"));
                WatermarkSpec::Control {
                    time: time?,
                    op: op?,
                    window,
                }
            }
            RawWatermark::Flag {
                column,
                pending,
                done,
                failed,
                error_column,
            } => {
                let column = self.ident(&format!("{p}.column"), &column);
                let error_column = match error_column {
                    Some(c) => Some(self.ident(&format!("{p}.error_column"), &c)?),
                    None => None,
                };
                let pending = self.flag_value(&format!("{p}.pending"), pending, 0);
                let done = self.flag_value(&format!("{p}.done"), done, 1);
                let failed = self.flag_value(&format!("{p}.failed"), failed, 9);
                if pending.is_some() && pending == done {
                    self.err(format!("{p}.done"), "must differ from `pending`");
                }
                WatermarkSpec::Flag {
                    column: column?,
                    pending: pending?,
                    done: done?,
                    failed: failed?,
                    error_column,
                }
            }
        })
    }

    pub(in crate::config) fn flag_value(
        &mut self,
        p: &str,
        v: Option<toml::Value>,
        default: i64,
    ) -> Option<Value> {
        match v {
            None => Some(Value::Int(default)),
            Some(toml::Value::Integer(i)) => Some(Value::Int(i)),
            Some(toml::Value::String(s)) => Some(Value::Text(s)),
            Some(other) => {
                self.err(
                    p,
                    format!("`{other}` is not a flag value: use an integer or a string"),
                );
                None
            }
        }
    }

    pub(super) fn table(&mut self, i: usize, mut t: RawTable) -> Option<TableSpec> {
        let p = format!("table[{i}]");
        let shape = self.shape(&p, &mut t);
        let source = self.table_name(&format!("{p}.source"), &t.source);
        let target = match &t.target {
            Some(s) => self.table_name(&format!("{p}.target"), s),
            None => source.clone(),
        };
        let key = t.key.as_ref().map(|k| self.idents(&format!("{p}.key"), k));
        let watermark = self.watermark(&format!("{p}.watermark"), t.watermark);
        let sched_text = t.schedule.as_deref().unwrap_or(DEFAULT_SCHEDULE);
        let sched = Schedule::parse(sched_text)
            .map_err(|e| self.err(format!("{p}.schedule"), e))
            .ok();
        let jitter = self.duration(&format!("{p}.jitter"), t.jitter.as_deref(), Duration::ZERO);
        if let (Some(s), Some(cat)) = (&sched, &t.category) {
            let name = t.name.as_deref().unwrap_or(&t.source);
            self.category(&p, name, cat, (s, jitter), sched_text);
        }
        let notify = match &t.notify {
            Some(c) => {
                if let Some(e) = self.source_engine.filter(|e| *e != EngineKind::Postgres) {
                    self.err(
                        format!("{p}.notify"),
                        format!("LISTEN/NOTIFY needs a PostgreSQL source; this source is {e}"),
                    );
                }
                Some(self.ident(&format!("{p}.notify"), c)?)
            }
            None => None,
        };
        let batch_size = t.batch_size.unwrap_or(DEFAULT_BATCH_SIZE);
        if !(1..=1_000_000).contains(&batch_size) {
            self.err(format!("{p}.batch_size"), "must be between 1 and 1000000");
        }
        let batch_bytes = t.batch_bytes.unwrap_or(DEFAULT_BATCH_BYTES);
        if batch_bytes < 65_536 {
            self.err(format!("{p}.batch_bytes"), "must be at least 65536");
        }
        let columns = t
            .columns
            .as_ref()
            .map(|c| self.idents(&format!("{p}.columns"), c));
        let mut rename = BTreeMap::new();
        for (from, to) in &t.rename {
            let rp = format!("{p}.rename.{from}");
            if let (Some(f), Some(to)) = (self.ident(&rp, from), self.ident(&rp, to)) {
                rename.insert(f, to);
            }
        }
        let constants = self.constants(&p, t.constants);
        let deletes = match t.deletes.as_deref() {
            None | Some("delete") => DeleteMode::Delete,
            Some("tombstone") => DeleteMode::Tombstone,
            Some(d) => {
                self.err(
                    format!("{p}.deletes"),
                    format!("`{d}` is not `delete` or `tombstone`"),
                );
                DeleteMode::Delete
            }
        };
        let max_lag = t
            .max_lag
            .as_deref()
            .map(|m| self.duration(&format!("{p}.max_lag"), Some(m), Duration::ZERO));
        let rules = self.rules(&p, t.rules);
        let translate = self.translate(&p, t.translate);
        let feedback_table = match &t.feedback_table {
            Some(f) => Some(self.table_name(&format!("{p}.feedback_table"), f)?),
            None => None,
        };
        if let Some(c) = &t.class_code
            && !super::super::file::class_code_ok(c)
        {
            self.err(
                format!("{p}.class_code"),
                format!("`{c}` is not a resource classification code: 5 letters or digits"),
            );
        }
        let (direction, arrival) = self.direction(&p, t.direction.as_deref(), t.arrival_flag);
        let pull = t.pull.and_then(|r| self.pull(&p, &t.source, r));
        let version_column = match &t.version_column {
            Some(c) => Some(self.ident(&format!("{p}.version_column"), c)?),
            None => None,
        };
        Some(TableSpec {
            name: t.name.unwrap_or_else(|| t.source.clone()),
            source: source?,
            target: target?,
            key: key.flatten(),
            watermark: watermark?,
            schedule: sched?,
            jitter,
            notify,
            category: t.category,
            batch_size,
            batch_bytes,
            columns: columns.flatten(),
            rename,
            constants,
            deletes,
            version_column,
            enabled: t.enabled.unwrap_or(true),
            max_lag,
            rules,
            translate,
            feedback_table,
            shape: shape?,
            class_code: t.class_code,
            direction,
            arrival,
            pull,
        })
    }

    /// A table's data category, and whether its schedule (with its jitter) always meets the
    /// category's frequency.
    fn category(
        &mut self,
        p: &str,
        name: &str,
        cat: &str,
        (s, jitter): (&Schedule, Duration),
        sched_text: &str,
    ) {
        match schedule::category_minimum(cat) {
            None => self.err(
                format!("{p}.category"),
                format!(
                    "`{cat}` is not a data category; known: {}",
                    schedule::CATEGORIES
                        .iter()
                        .map(|c| c.0)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
            Some((min, label)) if s.max_gap(&chrono_tz::UTC) > min => self.err(
                format!("{p}.schedule"),
                format!(
                    "table `{name}` holds {label} data (category `{cat}`), which DB23/T 2835 \
                     requires at least {}; schedule `{sched_text}` runs only {}",
                    schedule::frequency_words(min),
                    schedule::frequency_words(s.max_gap(&chrono_tz::UTC))
                ),
            ),
            Some((min, label)) => {
                if let Some(why) = crate::compliance::refusal(s, jitter, min, &chrono_tz::UTC) {
                    self.err(
                        format!("{p}.schedule"),
                        format!(
                            "table `{name}` holds {label} data (category `{cat}`), which DB23/T \
                             2835 requires at least {}: schedule `{sched_text}`: {why}",
                            schedule::frequency_words(min),
                        ),
                    );
                }
            }
        }
    }

    /// Exchange columns given a constant: text, numbers or booleans.
    pub(super) fn constants(
        &mut self,
        p: &str,
        raw: impl IntoIterator<Item = (String, toml::Value)>,
    ) -> Vec<(Ident, Value)> {
        let mut constants = Vec::new();
        for (col, v) in raw {
            let cp = format!("{p}.constants.{col}");
            let value = match v {
                toml::Value::String(s) => Some(Value::Text(s)),
                toml::Value::Integer(i) => Some(Value::Int(i)),
                toml::Value::Float(f) => Some(Value::Float(f)),
                toml::Value::Boolean(b) => Some(Value::Bool(b)),
                other => {
                    self.err(
                        &cp,
                        format!("`{other}` is not a text, number or boolean constant"),
                    );
                    None
                }
            };
            if let (Some(c), Some(v)) = (self.ident(&cp, &col), value) {
                constants.push((c, v));
            }
        }
        constants
    }
}
