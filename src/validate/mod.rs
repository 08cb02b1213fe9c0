//! Local quality rules, checked on every row before it is sent: a row that fails any rule is
//! quarantined with every failed rule, and the rest of its batch goes on.

pub mod checks;

use std::collections::HashSet;
use std::fmt;

use chrono::{NaiveDate, Utc};
use chrono_tz::Tz;

use crate::ident::{Ident, TableName};
use crate::value::{Value, parse_naive_datetime};
use crate::watermark::cmp_values;

/// Comparison of a cross-field rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Lt,
    Le,
    Eq,
    Ne,
    Ge,
    Gt,
}

impl CmpOp {
    pub fn parse(s: &str) -> Option<CmpOp> {
        Some(match s {
            "<" => CmpOp::Lt,
            "<=" => CmpOp::Le,
            "=" | "==" => CmpOp::Eq,
            "!=" | "<>" => CmpOp::Ne,
            ">=" => CmpOp::Ge,
            ">" => CmpOp::Gt,
            _ => return None,
        })
    }

    fn holds(self, o: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::*;
        match self {
            CmpOp::Lt => o == Less,
            CmpOp::Le => o != Greater,
            CmpOp::Eq => o == Equal,
            CmpOp::Ne => o != Equal,
            CmpOp::Ge => o != Less,
            CmpOp::Gt => o == Greater,
        }
    }
}

impl fmt::Display for CmpOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Eq => "=",
            CmpOp::Ne => "!=",
            CmpOp::Ge => ">=",
            CmpOp::Gt => ">",
        })
    }
}

/// Where a code set's values come from.
#[derive(Clone, Debug)]
pub enum Codes {
    /// Inline in the configuration, or read from a file when the configuration was loaded.
    Values(HashSet<String>),
    /// A column of a table in the front-end database, read when the table job starts.
    Table { table: TableName, column: Ident },
}

/// A check as configured.
#[derive(Clone, Debug)]
pub enum Check {
    Required,
    MaxLength(usize),
    Regex(regex::Regex),
    CodeSet(Codes),
    Uscc,
    IdNumber,
    /// Either a credit code or an ID number (a counterpart that is a company or a person).
    UsccOrIdNumber,
    /// GB/T 2260 format, and membership in a list when one is given.
    Region(Option<HashSet<String>>),
    Date {
        not_future: bool,
        not_before: Option<NaiveDate>,
    },
    Compare {
        op: CmpOp,
        other: Ident,
    },
}

impl Check {
    /// What a failure of a check whose details quote parts of the value (a birth date, a
    /// character) says instead, for a masked column.
    fn without_value(&self) -> Option<&'static str> {
        Some(match self {
            Check::Uscc => "is not a valid unified social credit code",
            Check::IdNumber => "is not a valid citizen ID number",
            Check::UsccOrIdNumber => "is neither a valid credit code nor a valid ID number",
            Check::Region(_) => "is not a valid region code",
            Check::Date { .. } => "is not a date, or a date out of the range allowed",
            _ => return None,
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Check::Required => "required",
            Check::MaxLength(_) => "max_length",
            Check::Regex(_) => "regex",
            Check::CodeSet(_) => "codeset",
            Check::Uscc => "uscc",
            Check::IdNumber => "id_number",
            Check::UsccOrIdNumber => "uscc_or_id_number",
            Check::Region(_) => "region",
            Check::Date { .. } => "date",
            Check::Compare { .. } => "compare",
        }
    }
}

/// A rule of a table's configuration.
#[derive(Clone, Debug)]
pub struct RuleSpec {
    pub id: String,
    pub column: Ident,
    pub check: Check,
    pub message: Option<String>,
    /// `severity = "warn"`: the row is sent and the finding reported.
    pub warn: bool,
}

/// A rule resolved against the columns a table job reads.
#[derive(Clone, Debug)]
pub struct Rule {
    pub id: String,
    pub column: String,
    /// Index of the checked column among the columns read.
    pub index: usize,
    /// For comparisons: index of the other column.
    pub other: Option<(usize, String)>,
    pub check: Check,
    pub message: Option<String>,
    /// The mask of the checked column: a failure shows the masked value, and says what is
    /// wrong without quoting any part of the value.
    pub mask: Option<crate::shape::Mask>,
    /// The mask of the other column of a comparison.
    pub other_mask: Option<crate::shape::Mask>,
    /// `severity = "warn"`: a failure does not stop the row.
    pub warn: bool,
}

fn blank(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Text(s) => s.trim().is_empty(),
        _ => false,
    }
}

/// A value as a date, for date rules and comparisons of times held as text.
fn as_date(v: &Value, tz: &Tz) -> Result<NaiveDate, String> {
    match v {
        Value::Date(d) => Ok(*d),
        Value::Timestamp(t) => Ok(t.date()),
        Value::TimestampTz(t) => Ok(t.with_timezone(tz).date_naive()),
        other => checks::date(&other.to_text()),
    }
}

/// Make two values comparable: a time held as text is read as a time.
fn comparable(v: &Value) -> Value {
    match v {
        Value::Text(s) => parse_naive_datetime(s)
            .map(Value::Timestamp)
            .unwrap_or_else(|| v.clone()),
        Value::Date(d) => Value::Timestamp(d.and_time(chrono::NaiveTime::MIN)),
        other => other.clone(),
    }
}

impl Rule {
    /// `None` when the row passes, else why it does not.
    pub fn failure(&self, row: &[Value], tz: &Tz) -> Option<String> {
        let v = row.get(self.index).unwrap_or(&Value::Null);
        let detail: Result<(), String> = match &self.check {
            Check::Required => {
                if blank(v) {
                    Err("is required but empty".into())
                } else {
                    Ok(())
                }
            }
            _ if blank(v) => Ok(()),
            Check::MaxLength(max) => {
                let n = v.to_text().chars().count();
                if n > *max {
                    Err(format!("has {n} characters, at most {max} are allowed"))
                } else {
                    Ok(())
                }
            }
            Check::Regex(re) => {
                if re.is_match(&v.to_text()) {
                    Ok(())
                } else {
                    Err(format!("does not match `{}`", re.as_str()))
                }
            }
            Check::CodeSet(Codes::Values(set)) => {
                if set.contains(v.to_text().trim()) {
                    Ok(())
                } else {
                    Err("is not in the code set".into())
                }
            }
            Check::CodeSet(Codes::Table { table, column }) => {
                Err(format!("code set {table}.{column} was not loaded"))
            }
            Check::Uscc => checks::uscc(v.to_text().trim()),
            Check::IdNumber => checks::id_number(v.to_text().trim()),
            Check::UsccOrIdNumber => {
                let s = v.to_text();
                let s = s.trim();
                checks::uscc(s).or_else(|a| {
                    checks::id_number(s).map_err(|b| {
                        format!("is neither a credit code ({a}) nor an ID number ({b})")
                    })
                })
            }
            Check::Region(list) => {
                let s = v.to_text();
                let s = s.trim();
                checks::region_format(s).and_then(|()| match list {
                    Some(l) if !l.contains(s) => Err("is not in the list of region codes".into()),
                    _ => Ok(()),
                })
            }
            Check::Date {
                not_future,
                not_before,
            } => as_date(v, tz).and_then(|d| {
                let today = Utc::now().with_timezone(tz).date_naive();
                if *not_future && d > today {
                    Err(format!("{d} is in the future"))
                } else if let Some(b) = not_before.filter(|b| d < *b) {
                    Err(format!("{d} is before {b}"))
                } else {
                    Ok(())
                }
            }),
            Check::Compare { op, .. } => {
                let Some((j, other)) = &self.other else {
                    return None;
                };
                let w = row.get(*j).unwrap_or(&Value::Null);
                if blank(w) || op.holds(cmp_values(&comparable(v), &comparable(w))) {
                    Ok(())
                } else {
                    let shown = match &self.other_mask {
                        Some(m) => m.show(w),
                        None => w.to_text(),
                    };
                    Err(format!("must be {op} {other} (`{shown}`)"))
                }
            }
        };
        let mut why = detail.err()?;
        let text = match &self.mask {
            Some(m) => {
                if let Some(generic) = self.check.without_value() {
                    why = generic.into();
                }
                m.show(v)
            }
            None => v.to_text(),
        };
        let shown: String = text.chars().take(60).collect();
        let value = if v.is_null() {
            String::new()
        } else {
            format!(" (value `{shown}`)")
        };
        Some(match &self.message {
            Some(m) => format!("[{}] {}: {m} — {why}{value}", self.id, self.column),
            None => format!("[{}] {}: {why}{value}", self.id, self.column),
        })
    }
}

/// Every blocking rule a row fails (the row is quarantined).
pub fn failures(rules: &[Rule], row: &[Value], tz: &Tz) -> Vec<String> {
    rules
        .iter()
        .filter(|r| !r.warn)
        .filter_map(|r| r.failure(row, tz))
        .collect()
}

/// Every `severity = "warn"` rule a row fails (the row is sent all the same).
pub fn findings(rules: &[Rule], row: &[Value], tz: &Tz) -> Vec<String> {
    rules
        .iter()
        .filter(|r| r.warn)
        .filter_map(|r| r.failure(row, tz))
        .collect()
}

/// The codes of a code-set file: the first field of every line, `#` lines skipped.
pub fn read_codes(path: &std::path::Path) -> Result<HashSet<String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(text
        .lines()
        .map(|l| l.trim_start_matches('\u{feff}'))
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|l| {
            l.split([',', '\t'])
                .next()
                .unwrap_or("")
                .trim()
                .trim_matches('"')
                .to_owned()
        })
        .filter(|c| !c.is_empty())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(check: Check) -> Rule {
        Rule {
            id: "R1".into(),
            column: "c".into(),
            index: 0,
            other: Some((1, "d".into())),
            check,
            message: None,
            mask: None,
            other_mask: None,
            warn: false,
        }
    }

    #[test]
    fn warn_rules_report_findings_and_do_not_block() {
        let long = [Value::Text("abcdef".into()), Value::Null];
        let rules = [
            Rule {
                id: "W1".into(),
                warn: true,
                ..rule(Check::MaxLength(3))
            },
            Rule {
                id: "B1".into(),
                ..rule(Check::Required)
            },
        ];
        assert!(failures(&rules, &long, &tz()).is_empty());
        let found = findings(&rules, &long, &tz());
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].starts_with("[W1] c:"), "{found:?}");
        let null = [Value::Null, Value::Null];
        assert_eq!(failures(&rules, &null, &tz()).len(), 1);
        assert!(findings(&rules, &null, &tz()).is_empty());
    }

    #[test]
    fn a_masked_column_fails_with_its_masked_value_and_no_part_of_it() {
        use crate::shape::Mask;
        let keep = || Some(Mask::Keep { first: 3, last: 4 });
        // A real date of birth, a wrong check character.
        let id = Value::Text("110101199003071235".into());
        let plain = rule(Check::IdNumber).failure(&[id.clone(), Value::Null], &tz());
        assert!(
            plain
                .as_deref()
                .is_some_and(|m| m.contains("110101199003071235"))
        );
        let masked = Rule {
            mask: keep(),
            ..rule(Check::IdNumber)
        };
        let msg = masked
            .failure(&[id.clone(), Value::Null], &tz())
            .expect("fails");
        assert!(msg.contains("110***********1235"), "{msg}");
        for part in ["19900307", "110101", "should be"] {
            assert!(!msg.contains(part), "{part} in {msg}");
        }
        let late = Value::Text("2099-01-01".into());
        let cmp = Rule {
            other_mask: Some(Mask::Replace(Value::Text("<hidden>".into()))),
            ..rule(Check::Compare {
                op: CmpOp::Lt,
                other: crate::ident::Ident::new("d").expect("ident"),
            })
        };
        let msg = cmp
            .failure(&[late, Value::Text("2000-01-01".into())], &tz())
            .expect("fails");
        assert!(
            msg.contains("<hidden>") && !msg.contains("2000-01-01"),
            "{msg}"
        );
    }

    fn tz() -> Tz {
        "Asia/Shanghai".parse().expect("tz")
    }

    fn fails(check: Check, v: Value) -> Option<String> {
        rule(check).failure(&[v, Value::Null], &tz())
    }

    #[test]
    fn required_and_lengths() {
        assert!(fails(Check::Required, Value::Null).is_some());
        assert!(fails(Check::Required, Value::Text("  ".into())).is_some());
        assert!(fails(Check::Required, Value::Text("x".into())).is_none());
        assert!(fails(Check::MaxLength(4), Value::Text("监管行为".into())).is_none());
        let e = fails(Check::MaxLength(3), Value::Text("监管行为".into())).expect("too long");
        assert_eq!(
            e,
            "[R1] c: has 4 characters, at most 3 are allowed (value `监管行为`)"
        );
        assert!(
            fails(Check::MaxLength(3), Value::Null).is_none(),
            "only `required` fails on empty"
        );
    }

    #[test]
    fn patterns_and_code_sets() {
        let re = regex::Regex::new("^[0-9]{14}$").expect("re");
        assert!(
            fails(
                Check::Regex(re.clone()),
                Value::Text("23000000100001".into())
            )
            .is_none()
        );
        assert!(fails(Check::Regex(re), Value::Text("2300000010000".into())).is_some());
        let set: HashSet<String> = ["01", "02"].iter().map(|s| s.to_string()).collect();
        assert!(
            fails(
                Check::CodeSet(Codes::Values(set.clone())),
                Value::Text("02".into())
            )
            .is_none()
        );
        assert!(fails(Check::CodeSet(Codes::Values(set)), Value::Text("09".into())).is_some());
    }

    #[test]
    fn identifiers() {
        assert!(fails(Check::Uscc, Value::Text("91350100M000100Y43".into())).is_none());
        let e = fails(Check::Uscc, Value::Text("91350100M000100Y44".into())).expect("bad");
        assert!(e.contains("check character is `4`, should be `3`"), "{e}");
        assert!(fails(Check::IdNumber, Value::Text("34052419800101001X".into())).is_none());
        assert!(fails(Check::IdNumber, Value::Text("340524198002310010".into())).is_some());
        assert!(
            fails(
                Check::UsccOrIdNumber,
                Value::Text("91350100M000100Y43".into())
            )
            .is_none()
        );
        assert!(
            fails(
                Check::UsccOrIdNumber,
                Value::Text("34052419800101001X".into())
            )
            .is_none()
        );
        assert!(fails(Check::UsccOrIdNumber, Value::Text("12345".into())).is_some());
        let list: HashSet<String> = ["230102".to_string()].into_iter().collect();
        assert!(fails(Check::Region(None), Value::Text("230103".into())).is_none());
        assert!(
            fails(
                Check::Region(Some(list.clone())),
                Value::Text("230103".into())
            )
            .is_some()
        );
        assert!(fails(Check::Region(Some(list)), Value::Text("230102".into())).is_none());
    }

    #[test]
    fn dates_and_comparisons() {
        let date = |nf, nb: Option<&str>| Check::Date {
            not_future: nf,
            not_before: nb.map(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("d")),
        };
        assert!(fails(date(true, None), Value::Text("2026-02-30".into())).is_some());
        assert!(fails(date(true, None), Value::Text("2099-01-01".into())).is_some());
        assert!(fails(date(false, None), Value::Text("2099-01-01".into())).is_none());
        assert!(
            fails(
                date(true, Some("2000-01-01")),
                Value::Text("1999-12-31".into())
            )
            .is_some()
        );
        let ge = rule(Check::Compare {
            op: CmpOp::Ge,
            other: Ident::new("d").expect("ident"),
        });
        let t = |s: &str| Value::Text(s.into());
        assert!(
            ge.failure(&[t("2026-11-02 10:00:00"), t("2026-11-02 09:00:00")], &tz())
                .is_none()
        );
        let e = ge
            .failure(&[t("2026-11-02 08:00:00"), t("2026-11-02 09:00:00")], &tz())
            .expect("earlier");
        assert!(e.contains("must be >= d"), "{e}");
        let ts = |s: &str| {
            Value::Timestamp(
                chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").expect("ts"),
            )
        };
        assert!(
            ge.failure(
                &[ts("2026-11-02 08:00:00"), t("2026-11-02 09:00:00")],
                &tz()
            )
            .is_some()
        );
        assert!(
            ge.failure(&[ts("2026-11-02 08:00:00"), Value::Null], &tz())
                .is_none()
        );
    }

    #[test]
    fn code_files_take_the_first_field_of_each_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("codes.csv");
        std::fs::write(
            &p,
            "\u{feff}# 检查形式\n01,现场检查\n\"02\",书面检查\n\n03\t网络\n",
        )
        .expect("write");
        let codes = read_codes(&p).expect("codes");
        assert_eq!(codes.len(), 3);
        assert!(codes.contains("01") && codes.contains("02") && codes.contains("03"));
    }
}
