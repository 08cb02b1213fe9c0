//! The outbound mapping: a source row becomes an exchange row (projection, renames,
//! constants, control columns), every value converted to its exchange column's type.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::ident::Col;
use crate::shape::Mask;
use crate::sink::Op;
use crate::value::{ColType, Value};

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
    /// Whether the batch is a full resync's or an increment's (`[resync] full_column`).
    Full,
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
    /// Per exchange column: it is the only one fed by its source column, so a value that
    /// needs no conversion is moved into the exchange row rather than copied.
    sole: Vec<bool>,
    /// Every exchange column is the source column of the same place: a source row whose
    /// values all pass unconverted becomes the exchange row as it is.
    identity: bool,
    /// The exchange's text cannot hold NUL (PostgreSQL's cannot).
    text_without_nul: bool,
    /// The source's text cannot hold NUL (PostgreSQL's cannot): values taken over from its
    /// columns need not be searched for one.
    nul_free_source: bool,
    /// Per exchange column: the mask of the source column it is fed by (outbound shaping).
    masks: Vec<Option<Mask>>,
    /// Per exchange column: how its source column's values are converted first, where the
    /// two types need it (see [`crate::typefit`]).
    convs: Vec<Option<crate::typefit::Conv>>,
}

/// Per-batch values of the generated columns.
pub struct RowCtx<'a> {
    pub tz: &'a Tz,
    pub exchange_time: DateTime<Utc>,
    pub cd_batch: &'a str,
    pub origin: Option<&'a str>,
    pub lower_ops: bool,
    /// The mark of the batch: a full resync's or an increment's.
    pub mark: &'a str,
}

impl Mapping {
    /// Every exchange column is the source column of the same place, and nothing else is
    /// written.
    pub fn is_identity(&self) -> bool {
        self.identity
    }

    pub fn new(
        columns: Vec<Col>,
        sources: Vec<Source>,
        key: Vec<usize>,
        version: Option<usize>,
        text_without_nul: bool,
    ) -> Self {
        let max_chars = columns.iter().map(|c| char_limit(&c.native)).collect();
        let sole = sources
            .iter()
            .map(|s| match s {
                Source::Column(j) => {
                    sources
                        .iter()
                        .filter(|t| matches!(t, Source::Column(k) if k == j))
                        .count()
                        == 1
                }
                _ => false,
            })
            .collect();
        let identity = sources
            .iter()
            .enumerate()
            .all(|(i, s)| *s == Source::Column(i));
        Mapping {
            columns,
            sources,
            key,
            version,
            max_chars,
            sole,
            identity,
            text_without_nul,
            nul_free_source: false,
            masks: Vec::new(),
            convs: Vec::new(),
        }
    }

    /// Mask the exchange columns fed by these source columns (indexes into the columns
    /// read): their values are masked before anything else happens to them, so that no
    /// unmasked value goes out, nor into a message about it. A masked row is never passed on
    /// as it was read.
    pub fn mask(&mut self, read_masks: &[Option<Mask>]) {
        self.masks = self
            .sources
            .iter()
            .map(|s| match s {
                Source::Column(j) => read_masks.get(*j).cloned().flatten(),
                _ => None,
            })
            .collect();
        for (sole, m) in self.sole.iter_mut().zip(&self.masks) {
            if m.is_some() {
                *sole = false;
            }
        }
        if self.masks.iter().any(Option::is_some) {
            self.identity = false;
        }
    }

    /// Convert the values of exchange columns fed from the source first (one per exchange
    /// column). A row with such a column is never passed on as it was read.
    pub fn convert_types(&mut self, convs: Vec<Option<crate::typefit::Conv>>) {
        for (sole, c) in self.sole.iter_mut().zip(&convs) {
            if c.is_some() {
                *sole = false;
            }
        }
        if convs.iter().any(Option::is_some) {
            self.identity = false;
        }
        self.convs = convs;
    }

    /// Say that the source's text cannot hold NUL (a PostgreSQL source).
    pub fn nul_free_source(&mut self, yes: bool) {
        self.nul_free_source = yes;
    }

    /// The key columns of the exchange table.
    pub fn key_cols(&self) -> Vec<Col> {
        self.key.iter().map(|&i| self.columns[i].clone()).collect()
    }

    pub fn version_col(&self) -> Option<&Col> {
        self.version.map(|i| &self.columns[i])
    }

    /// The exchange row for a source row; the error names the column and the cause.
    ///
    /// Values that go over unconverted are moved out of `src` (leaving NULL there, or
    /// nothing when the whole row went over as it is) rather than copied;
    /// [`Mapping::restore`] puts them back. On an error `src` is untouched.
    pub fn row(
        &self,
        src: &mut Vec<Value>,
        op: Op,
        ctx: &RowCtx<'_>,
    ) -> Result<Vec<Value>, String> {
        if self.identity
            && src.len() == self.columns.len()
            && src
                .iter()
                .zip(&self.columns)
                .all(|(v, c)| v.passes_as(c.ty))
        {
            for (i, (v, col)) in src.iter().zip(&self.columns).enumerate() {
                self.check_source(i, col, v)?;
            }
            return Ok(std::mem::take(src));
        }
        let mut out = Vec::with_capacity(self.columns.len());
        let mut moved = false;
        for (i, (col, source)) in self.columns.iter().zip(&self.sources).enumerate() {
            let v = match source {
                Source::Column(j) => match src.get(*j) {
                    Some(v) if self.sole[i] && v.passes_as(col.ty) => {
                        self.check_source(i, col, v)?;
                        moved = true;
                        out.push(Value::Null);
                        continue;
                    }
                    Some(v) => {
                        let v = match self.masks.get(i).and_then(Option::as_ref) {
                            Some(m) => m.apply(v),
                            None => v.clone(),
                        };
                        match self.convs.get(i).and_then(Option::as_ref) {
                            Some(c) => c
                                .apply(v)
                                .map_err(|e| format!("exchange column {}: {e}", col.name))?,
                            None => v,
                        }
                    }
                    None => Value::Null,
                },
                Source::Constant(v) => v.clone(),
                Source::Operation => Value::Text(op.letter(ctx.lower_ops).into()),
                Source::ExchangeTime => Value::TimestampTz(ctx.exchange_time),
                Source::Batch => Value::Text(ctx.cd_batch.into()),
                Source::Origin => ctx.origin.map_or(Value::Null, |o| Value::Text(o.into())),
                Source::Full => Value::Text(ctx.mark.into()),
            };
            out.push(self.convert(i, col, v, ctx.tz)?);
        }
        if moved {
            for ((i, source), slot) in self.sources.iter().enumerate().zip(&mut out) {
                if let Source::Column(j) = source
                    && self.sole[i]
                    && let Some(v) = src.get_mut(*j)
                    && v.passes_as(self.columns[i].ty)
                {
                    *slot = std::mem::replace(v, Value::Null);
                }
            }
        }
        Ok(out)
    }

    /// Put back into a source row of `width` columns what [`Mapping::row`] moved out of it
    /// into `row`.
    pub fn restore(&self, src: &mut Vec<Value>, width: usize, row: &[Value]) {
        src.resize(width, Value::Null);
        for ((i, source), v) in self.sources.iter().enumerate().zip(row) {
            if let Source::Column(j) = source
                && self.sole[i]
                && let Some(s) = src.get_mut(*j)
                && s.is_null()
            {
                // Moved, or NULL in the first place (which maps to NULL).
                *s = v.clone();
            }
        }
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
                Source::Full => Value::Text(ctx.mark.into()),
                Source::Constant(v) => v.clone(),
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
        self.check(i, col, &out)?;
        Ok(out)
    }

    /// [`Mapping::check`] of a value taken over from a source column as it is.
    fn check_source(&self, i: usize, col: &Col, v: &Value) -> Result<(), String> {
        if self.nul_free_source {
            self.check_length(i, col, v)
        } else {
            self.check(i, col, v)
        }
    }

    /// Whether exchange column `i` can hold a value of its own kind.
    fn check(&self, i: usize, col: &Col, out: &Value) -> Result<(), String> {
        self.check_length(i, col, out)?;
        if self.text_without_nul
            && let Value::Text(s) = out
            && s.contains('\0')
        {
            return Err(format!(
                "exchange column {}: PostgreSQL text cannot hold a NUL character",
                col.name
            ));
        }
        Ok(())
    }

    /// Whether the value fits the character limit of exchange column `i`.
    fn check_length(&self, i: usize, col: &Col, out: &Value) -> Result<(), String> {
        if let (Value::Text(s), Some(max)) = (out, self.max_chars[i])
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
        Ok(())
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
    use crate::ident::Ident;

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
            mark: "increment",
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
            true,
        );
        let row = m
            .row(
                &mut vec![Value::Text("7".into()), Value::Text("监管行为".into())],
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
                &mut vec![Value::Int(8), Value::Text("五个汉字啊".into())],
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
                &mut vec![Value::Text("x".into()), Value::Null],
                Op::Insert,
                &ctx(&tz),
            )
            .expect_err("not an int");
        assert!(err.contains("exchange column id"), "{err}");
    }

    #[test]
    fn nul_is_refused_for_postgresql_unless_the_source_cannot_hold_it() {
        let tz: Tz = "Asia/Shanghai".parse().expect("tz");
        let mut m = Mapping::new(
            vec![
                col("id", ColType::Int, "bigint"),
                col("v", ColType::Text, "text"),
            ],
            vec![Source::Column(0), Source::Column(1)],
            vec![0],
            None,
            true,
        );
        let nul = || vec![Value::Int(1), Value::Text("a\0b".into())];
        let err = m.row(&mut nul(), Op::Insert, &ctx(&tz)).expect_err("nul");
        assert!(
            err.contains("exchange column v: PostgreSQL text cannot hold a NUL"),
            "{err}"
        );
        // Read from PostgreSQL, text has no NUL to look for: the search is skipped.
        m.nul_free_source(true);
        assert!(m.row(&mut nul(), Op::Insert, &ctx(&tz)).is_ok());
        // A value converted on the way is still searched.
        let mut c = Mapping::new(
            vec![col("v", ColType::Text, "text")],
            vec![Source::Constant(Value::Text("c\0".into()))],
            vec![0],
            None,
            true,
        );
        c.nul_free_source(true);
        assert!(c.row(&mut Vec::new(), Op::Insert, &ctx(&tz)).is_err());
    }

    #[test]
    fn unconverted_values_are_moved_and_restored() {
        let tz: Tz = "Asia/Shanghai".parse().expect("tz");
        let m = Mapping::new(
            vec![
                col("id", ColType::Int, "bigint"),
                col("name", ColType::Text, "character varying(8)"),
                col("name_again", ColType::Text, "text"),
                col("amount", ColType::Decimal, "numeric(10,2)"),
                col("note", ColType::Text, "character varying(4)"),
            ],
            vec![
                Source::Column(0),
                Source::Column(1),
                Source::Column(1),
                Source::Column(2),
                Source::Column(3),
            ],
            vec![0],
            None,
            true,
        );
        let original = vec![
            Value::Int(7),
            Value::Text("监管".into()),
            Value::Text("12.50".into()),
            Value::Null,
        ];
        let mut src = original.clone();
        let row = m.row(&mut src, Op::Update, &ctx(&tz)).expect("row");
        assert_eq!(
            row,
            vec![
                Value::Int(7),
                Value::Text("监管".into()),
                Value::Text("监管".into()),
                Value::Decimal("12.50".into()),
                Value::Null,
            ]
        );
        // The key moved; the name feeds two columns and the amount is converted: copied.
        assert_eq!(src[0], Value::Null);
        assert_eq!(src[1], original[1]);
        assert_eq!(src[2], original[2]);
        m.restore(&mut src, 4, &row);
        assert_eq!(src, original);

        // A value that does not fit leaves the source row as it was.
        let mut src = vec![
            Value::Int(8),
            Value::Text("x".into()),
            Value::Null,
            Value::Text("五个汉字啊".into()),
        ];
        let before = src.clone();
        let err = m
            .row(&mut src, Op::Update, &ctx(&tz))
            .expect_err("too long");
        assert!(err.contains("exchange column note"), "{err}");
        assert_eq!(src, before);
    }

    #[test]
    fn a_row_mapped_as_it_is_is_taken_whole_and_restored() {
        let tz: Tz = "Asia/Shanghai".parse().expect("tz");
        let m = Mapping::new(
            vec![
                col("id", ColType::Int, "bigint"),
                col("name", ColType::Text, "character varying(4)"),
            ],
            vec![Source::Column(0), Source::Column(1)],
            vec![0],
            None,
            true,
        );
        let original = vec![Value::Int(7), Value::Text("监管".into())];
        let mut src = original.clone();
        let row = m.row(&mut src, Op::Update, &ctx(&tz)).expect("row");
        assert_eq!(row, original);
        assert!(src.is_empty());
        m.restore(&mut src, 2, &row);
        assert_eq!(src, original);
        // Too long for its column: an error, the row untouched.
        let mut src = vec![Value::Int(8), Value::Text("五个汉字啊".into())];
        let before = src.clone();
        assert!(m.row(&mut src, Op::Update, &ctx(&tz)).is_err());
        assert_eq!(src, before);
        // A value to convert takes the general way.
        let mut src = vec![Value::Text("9".into()), Value::Null];
        let row = m.row(&mut src, Op::Update, &ctx(&tz)).expect("row");
        assert_eq!(row, vec![Value::Int(9), Value::Null]);
        assert_eq!(src, vec![Value::Text("9".into()), Value::Null]);
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

#[cfg(test)]
#[path = "mapping_mask_tests.rs"]
mod mask_tests;
