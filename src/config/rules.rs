//! Validation of a table's quality rules (`rules = [...]`).

use super::schema::RawRule;
use super::validate::V;
use crate::validate::{Check, CmpOp, Codes, RuleSpec};

impl V<'_> {
    pub(super) fn rules(&mut self, p: &str, raw: Vec<RawRule>) -> Vec<RuleSpec> {
        let mut out = Vec::new();
        for (i, r) in raw.into_iter().enumerate() {
            let rp = format!("{p}.rules[{i}]");
            let Some(column) = self.ident(&format!("{rp}.column"), &r.column) else {
                continue;
            };
            let need = |v: &mut Self, what: &str| {
                v.err(
                    format!("{rp}.{what}"),
                    format!("a `{}` rule needs `{what}`", r.check),
                );
            };
            let values = |v: &mut Self| -> Option<std::collections::HashSet<String>> {
                match (&r.values, &r.file) {
                    (Some(vals), _) => Some(vals.iter().map(|s| s.trim().to_owned()).collect()),
                    (None, Some(f)) => crate::validate::read_codes(&v.base.join(f))
                        .map_err(|e| v.err(format!("{rp}.file"), e))
                        .ok(),
                    (None, None) => None,
                }
            };
            let check = match r.check.as_str() {
                "required" => Some(Check::Required),
                "uscc" => Some(Check::Uscc),
                "id_number" => Some(Check::IdNumber),
                "uscc_or_id_number" => Some(Check::UsccOrIdNumber),
                "max_length" => match r.max {
                    Some(m) => Some(Check::MaxLength(m)),
                    None => {
                        need(self, "max");
                        None
                    }
                },
                "regex" => match &r.pattern {
                    Some(pat) => regex::Regex::new(pat)
                        .map_err(|e| {
                            self.err(
                                format!("{rp}.pattern"),
                                format!("not a regular expression: {e}"),
                            )
                        })
                        .ok()
                        .map(Check::Regex),
                    None => {
                        need(self, "pattern");
                        None
                    }
                },
                "codeset" => {
                    let set = values(self);
                    self.codeset(&rp, &r, set)
                }
                "region" => Some(Check::Region(values(self))),
                "date" => self.date(&rp, &r),
                "compare" => self.compare(&rp, &r),
                other => {
                    self.err(
                        format!("{rp}.check"),
                        format!(
                            "`{other}` is not a check: use required, max_length, regex, codeset, \
                             uscc, id_number, uscc_or_id_number, region, date or compare"
                        ),
                    );
                    None
                }
            };
            let warn = match r.severity.as_deref() {
                None | Some("block") => false,
                Some("warn") => true,
                Some(other) => {
                    self.err(
                        format!("{rp}.severity"),
                        format!("`{other}` is not a severity: use block or warn"),
                    );
                    false
                }
            };
            if let Some(check) = check {
                out.push(RuleSpec {
                    id: r.id.clone().unwrap_or_else(|| format!("R{}", i + 1)),
                    column,
                    check,
                    message: r.message.clone(),
                    warn,
                });
            }
        }
        out
    }

    /// A code set: a table of the front-end database, listed values, or a file of them.
    fn codeset(
        &mut self,
        rp: &str,
        r: &RawRule,
        values: Option<std::collections::HashSet<String>>,
    ) -> Option<Check> {
        match (&r.table, values) {
            (Some(t), _) => {
                let table = self.table_name(&format!("{rp}.table"), t);
                let column = self.ident(
                    &format!("{rp}.code_column"),
                    r.code_column.as_deref().unwrap_or("code"),
                );
                Some(Check::CodeSet(Codes::Table {
                    table: table?,
                    column: column?,
                }))
            }
            (None, Some(set)) => Some(Check::CodeSet(Codes::Values(set))),
            (None, None) => {
                if r.file.is_none() {
                    self.need(rp, r, "values");
                }
                None
            }
        }
    }

    /// A date: not in the future (unless allowed), not before a given day.
    fn date(&mut self, rp: &str, r: &RawRule) -> Option<Check> {
        let not_before = match &r.not_before {
            Some(d) => chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d")
                .map_err(|_| {
                    self.err(
                        format!("{rp}.not_before"),
                        format!("`{d}` is not a date (YYYY-MM-DD)"),
                    )
                })
                .ok(),
            None => None,
        };
        Some(Check::Date {
            not_future: r.not_future.unwrap_or(true),
            not_before,
        })
    }

    /// A comparison with another column of the row.
    fn compare(&mut self, rp: &str, r: &RawRule) -> Option<Check> {
        let op = match r.op.as_deref().map(|o| (o, CmpOp::parse(o))) {
            Some((_, Some(op))) => Some(op),
            Some((o, None)) => {
                self.err(
                    format!("{rp}.op"),
                    format!("`{o}` is not <, <=, =, !=, >= or >"),
                );
                None
            }
            None => {
                self.need(rp, r, "op");
                None
            }
        };
        let other = match &r.other {
            Some(o) => self.ident(&format!("{rp}.other"), o),
            None => {
                self.need(rp, r, "other");
                None
            }
        };
        Some(Check::Compare {
            op: op?,
            other: other?,
        })
    }

    /// A rule of this check lacks `what`.
    fn need(&mut self, rp: &str, r: &RawRule, what: &str) {
        self.err(
            format!("{rp}.{what}"),
            format!("a `{}` rule needs `{what}`", r.check),
        );
    }
}
