//! The outbound mapping: a source row becomes an exchange row (projection, renames,
//! constants, control columns), every value converted to its exchange column's type.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::db::dialect::{Col, Dialect};
use crate::value::{ColType, Value};

/// What an exchange row operation is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Insert,
    Update,
    Delete,
}

impl Op {
    /// Parse an operation letter (`I`/`U`/`D`, any case).
    pub fn parse(v: &Value) -> Option<Op> {
        match v {
            Value::Text(s) => match s.trim() {
                "I" | "i" => Some(Op::Insert),
                "U" | "u" => Some(Op::Update),
                "D" | "d" => Some(Op::Delete),
                _ => None,
            },
            _ => None,
        }
    }

    pub fn letter(self, lower: bool) -> &'static str {
        match (self, lower) {
            (Op::Insert, false) => "I",
            (Op::Update, false) => "U",
            (Op::Delete, false) => "D",
            (Op::Insert, true) => "i",
            (Op::Update, true) => "u",
            (Op::Delete, true) => "d",
        }
    }
}

/// Where an exchange column's value comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    /// A column read from the source (index into the read columns).
    Column(usize),
    Constant(Value),
    /// The operation letter.
    Operation,
    /// The time of the exchange.
    ExchangeTime,
    /// The batch number (`yyyyMMdd` + counter).
    Batch,
    /// Region code + department code.
    Origin,
}

/// The exchange row of every source row of one table.
#[derive(Clone, Debug)]
pub struct Mapping {
    /// Exchange columns written, in row order.
    pub columns: Vec<Col>,
    pub sources: Vec<Source>,
    /// Indexes into `columns` of the exchange key.
    pub key: Vec<usize>,
    /// Index into `columns` of the version column (newer rows win).
    pub version: Option<usize>,
    /// Most characters each exchange column holds, where its type says.
    max_chars: Vec<Option<usize>>,
    target: Dialect,
}

/// Per-batch values of the generated columns.
pub struct RowCtx<'a> {
    pub tz: &'a Tz,
    pub exchange_time: DateTime<Utc>,
    pub cd_batch: &'a str,
    pub origin: Option<&'a str>,
    pub lower_ops: bool,
}

impl Mapping {
    pub fn new(
        columns: Vec<Col>,
        sources: Vec<Source>,
        key: Vec<usize>,
        version: Option<usize>,
        target: Dialect,
    ) -> Self {
        let max_chars = columns.iter().map(|c| char_limit(&c.native)).collect();
        Mapping {
            columns,
            sources,
            key,
            version,
            max_chars,
            target,
        }
    }

    /// The key columns of the exchange table.
    pub fn key_cols(&self) -> Vec<Col> {
        self.key.iter().map(|&i| self.columns[i].clone()).collect()
    }

    pub fn version_col(&self) -> Option<&Col> {
        self.version.map(|i| &self.columns[i])
    }

    /// The exchange row for a source row; the error names the column and the cause.
    pub fn row(&self, src: &[Value], op: Op, ctx: &RowCtx<'_>) -> Result<Vec<Value>, String> {
        self.columns
            .iter()
            .zip(&self.sources)
            .enumerate()
            .map(|(i, (col, source))| {
                let v = match source {
                    Source::Column(j) => src.get(*j).cloned().unwrap_or(Value::Null),
                    Source::Constant(v) => v.clone(),
                    Source::Operation => Value::Text(op.letter(ctx.lower_ops).into()),
                    Source::ExchangeTime => Value::TimestampTz(ctx.exchange_time),
                    Source::Batch => Value::Text(ctx.cd_batch.into()),
                    Source::Origin => ctx.origin.map_or(Value::Null, |o| Value::Text(o.into())),
                };
                self.convert(i, col, v, ctx.tz)
            })
            .collect()
    }

    /// Parameters of a delete: the exchange key values, then the version when there is one.
    pub fn delete_params(&self, src: &[Value], tz: &Tz) -> Result<Vec<Value>, String> {
        let mut out = Vec::with_capacity(self.key.len() + 1);
        for &i in self.key.iter().chain(self.version.iter()) {
            let v = match &self.sources[i] {
                Source::Column(j) => src.get(*j).cloned().unwrap_or(Value::Null),
                Source::Constant(v) => v.clone(),
                _ => Value::Null,
            };
            out.push(self.convert(i, &self.columns[i], v, tz)?);
        }
        Ok(out)
    }

    /// Delete parameters from the key values alone (digest mode: the row is gone).
    pub fn delete_params_from_key(&self, key: &[Value], tz: &Tz) -> Result<Vec<Value>, String> {
        let mut out = Vec::with_capacity(key.len());
        for (&i, v) in self.key.iter().zip(key) {
            out.push(self.convert(i, &self.columns[i], v.clone(), tz)?);
        }
        Ok(out)
    }

    /// Parameters of a tombstone for a row gone from the source: the values of the columns
    /// `sets` (operation `D`, the exchange time, the batch number), then the exchange key.
    pub fn tombstone_params(
        &self,
        sets: &[usize],
        key: &[Value],
        ctx: &RowCtx<'_>,
    ) -> Result<Vec<Value>, String> {
        let mut out = Vec::with_capacity(sets.len() + key.len());
        for &i in sets {
            let v = match &self.sources[i] {
                Source::Operation => Value::Text(Op::Delete.letter(ctx.lower_ops).into()),
                Source::Batch => Value::Text(ctx.cd_batch.into()),
                _ => Value::TimestampTz(ctx.exchange_time),
            };
            out.push(self.convert(i, &self.columns[i], v, ctx.tz)?);
        }
        out.extend(key.iter().cloned());
        Ok(out)
    }

    fn convert(&self, i: usize, col: &Col, v: Value, tz: &Tz) -> Result<Value, String> {
        let out = v
            .coerce(col.ty, tz)
            .map_err(|e| format!("exchange column {}: {e}", col.name))?;
        if let (Value::Text(s), Some(max)) = (&out, self.max_chars[i])
            && s.len() > max
        {
            let n = s.chars().count();
            if n > max {
                let shown = if n > 40 {
                    format!("{}…", s.chars().take(40).collect::<String>())
                } else {
                    s.clone()
                };
                return Err(format!(
                    "exchange column {} holds at most {max} characters ({}), the value has {n}: `{shown}`",
                    col.name, col.native
                ));
            }
        }
        if self.target == Dialect::Postgres
            && let Value::Text(s) = &out
            && s.contains('\0')
        {
            return Err(format!(
                "exchange column {}: PostgreSQL text cannot hold a NUL character",
                col.name
            ));
        }
        Ok(out)
    }
}

/// The character limit of `varchar(n)`-like native types.
pub fn char_limit(native: &str) -> Option<usize> {
    let n = native.to_ascii_lowercase();
    let textual = [
        "varchar",
        "character varying",
        "char",
        "character",
        "nvarchar",
        "nchar",
    ]
    .iter()
    .any(|p| n.starts_with(p));
    if !textual || n.contains("[]") {
        return None;
    }
    let open = n.find('(')?;
    let close = n[open..].find(')')? + open;
    n[open + 1..close].trim().parse().ok()
}

/// Whether a column kind can hold the letters of an operation.
pub fn holds_text(ty: ColType) -> bool {
    matches!(ty, ColType::Text | ColType::Other)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::ident::Ident;

    fn col(name: &str, ty: ColType, native: &str) -> Col {
        Col {
            name: Ident::new(name).expect("ident"),
            ty,
            native: native.into(),
        }
    }

    fn ctx(tz: &Tz) -> RowCtx<'_> {
        RowCtx {
            tz,
            exchange_time: DateTime::parse_from_rfc3339("2026-11-23T02:00:00Z")
                .expect("t")
                .with_timezone(&Utc),
            cd_batch: "2026112300001",
            origin: Some("230000SCJGJ"),
            lower_ops: false,
        }
    }

    #[test]
    fn builds_rows_with_constants_and_control_columns() {
        let tz: Tz = "Asia/Shanghai".parse().expect("tz");
        let m = Mapping::new(
            vec![
                col("id", ColType::Int, "int8"),
                col("name", ColType::Text, "character varying(4)"),
                col("region", ColType::Text, "text"),
                col("cd_operation", ColType::Text, "varchar(1)"),
                col("cd_time", ColType::Timestamp, "timestamp"),
                col("cd_batch", ColType::Text, "varchar(32)"),
                col("cd_source", ColType::Text, "varchar(32)"),
            ],
            vec![
                Source::Column(0),
                Source::Column(1),
                Source::Constant(Value::Text("230000".into())),
                Source::Operation,
                Source::ExchangeTime,
                Source::Batch,
                Source::Origin,
            ],
            vec![0],
            None,
            Dialect::Postgres,
        );
        let row = m
            .row(
                &[Value::Text("7".into()), Value::Text("监管行为".into())],
                Op::Update,
                &ctx(&tz),
            )
            .expect("row");
        assert_eq!(row[0], Value::Int(7));
        assert_eq!(row[3], Value::Text("U".into()));
        assert_eq!(row[4].to_text(), "2026-11-23 10:00:00.000000");
        assert_eq!(row[5], Value::Text("2026112300001".into()));
        let err = m
            .row(
                &[Value::Int(8), Value::Text("五个汉字啊".into())],
                Op::Insert,
                &ctx(&tz),
            )
            .expect_err("too long");
        assert!(
            err.contains("exchange column name holds at most 4 characters"),
            "{err}"
        );
        let err = m
            .row(
                &[Value::Text("x".into()), Value::Null],
                Op::Insert,
                &ctx(&tz),
            )
            .expect_err("not an int");
        assert!(err.contains("exchange column id"), "{err}");
    }

    #[test]
    fn operations_parse_in_any_case() {
        assert_eq!(Op::parse(&Value::Text("d".into())), Some(Op::Delete));
        assert_eq!(Op::parse(&Value::Text("U".into())), Some(Op::Update));
        assert_eq!(Op::parse(&Value::Text("X".into())), None);
        assert_eq!(Op::Delete.letter(true), "d");
    }

    #[test]
    fn character_limits_from_native_types() {
        assert_eq!(char_limit("character varying(50)"), Some(50));
        assert_eq!(char_limit("varchar(32)"), Some(32));
        assert_eq!(char_limit("char(1)"), Some(1));
        assert_eq!(char_limit("text"), None);
        assert_eq!(char_limit("numeric(12,2)"), None);
        assert_eq!(char_limit("character varying(10)[]"), None);
    }
}
