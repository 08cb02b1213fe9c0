//! `translate`: a column's local codes replaced by the standard's before the row is sent —
//! from an inline map, a file, or a table of the front-end or the exchange database — and a
//! code the map does not know either refused (the row is quarantined with the reason) or
//! passed as it is, as configured.

use std::collections::HashMap;

use crate::ident::{Ident, TableName};
use crate::value::Value;

/// Where a translation's pairs come from.
#[derive(Clone, Debug)]
pub enum Pairs {
    /// Inline in the configuration, or read from a file when it was loaded.
    Values(HashMap<String, String>),
    /// Two columns of a table, read when the table job starts.
    Table {
        exchange: bool,
        table: TableName,
        from: Ident,
        to: Ident,
    },
}

/// One column's translation as configured.
#[derive(Clone, Debug)]
pub struct TranslateSpec {
    pub column: Ident,
    pub pairs: Pairs,
    /// An unknown code is sent as it is (else the row is refused).
    pub pass_unknown: bool,
}

/// A translation resolved against the columns read.
#[derive(Clone, Debug)]
pub struct Translate {
    pub column: String,
    pub index: usize,
    pub pairs: Pairs,
    pub pass_unknown: bool,
}

/// Translate the row's codes in place; the reasons of the codes that no map knows (and may
/// not pass).
pub fn apply(all: &[Translate], values: &mut [Value]) -> Vec<String> {
    let mut out = Vec::new();
    for t in all {
        let Pairs::Values(map) = &t.pairs else {
            continue;
        };
        let Some(v) = values.get_mut(t.index) else {
            continue;
        };
        if v.is_null() {
            continue;
        }
        let code = v.to_text();
        match map.get(code.trim()) {
            Some(to) => *v = Value::Text(to.clone()),
            None if t.pass_unknown => {}
            None => out.push(format!(
                "translate {}: code `{}` is not in the translation",
                t.column,
                code.chars().take(60).collect::<String>()
            )),
        }
    }
    out
}

/// The pairs of a translation file: `local,standard` per line (a tab also separates),
/// `#` lines skipped.
pub fn read_pairs(path: &std::path::Path) -> Result<HashMap<String, String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut out = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let l = line.trim_start_matches('\u{feff}').trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let mut f = l.split([',', '\t']).map(|s| s.trim().trim_matches('"'));
        match (f.next(), f.next()) {
            (Some(a), Some(b)) if !a.is_empty() => {
                out.insert(a.to_owned(), b.to_owned());
            }
            _ => {
                return Err(format!(
                    "{} line {}: write `local,standard`",
                    path.display(),
                    n + 1
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(pass_unknown: bool) -> Translate {
        Translate {
            column: "kind".into(),
            index: 1,
            pairs: Pairs::Values(HashMap::from([("1".to_owned(), "01".to_owned())])),
            pass_unknown,
        }
    }

    #[test]
    fn known_codes_are_replaced_unknown_refused_or_passed() {
        let mut row = vec![Value::Int(7), Value::Int(1)];
        assert!(apply(&[t(false)], &mut row).is_empty());
        assert_eq!(row[1], Value::Text("01".into()));
        let mut row = vec![Value::Int(7), Value::Text("9".into())];
        let why = apply(&[t(false)], &mut row);
        assert_eq!(why, ["translate kind: code `9` is not in the translation"]);
        assert!(apply(&[t(true)], &mut row).is_empty());
        assert_eq!(row[1], Value::Text("9".into()));
        let mut row = vec![Value::Int(7), Value::Null];
        assert!(apply(&[t(false)], &mut row).is_empty());
    }

    #[test]
    fn a_file_holds_pairs() {
        let dir = tempfile::tempdir().expect("dir");
        let f = dir.path().join("codes.csv");
        std::fs::write(&f, "# local,standard\n1,01\n\"2\",\"02\"\n").expect("write");
        let pairs = read_pairs(&f).expect("pairs");
        assert_eq!(pairs.get("2").map(String::as_str), Some("02"));
        std::fs::write(&f, "1\n").expect("write");
        assert!(read_pairs(&f).expect_err("bad").contains("line 1"));
    }
}
