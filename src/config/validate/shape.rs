//! A table's outbound shaping: its masks, its sharing class and its scope (`filter`).

use super::*;
use crate::config::Shape;
use crate::config::schema::{RawFilter, RawMask};
use crate::shape::{HashAlgo, Mask, Scope, Sharing};

impl V<'_> {
    /// The shaping keys of a table (taken out of `t`).
    pub(super) fn shape(&mut self, p: &str, t: &mut RawTable) -> Option<Shape> {
        let name = t.name.clone().unwrap_or_else(|| t.source.clone());
        let mut masks = BTreeMap::new();
        let mut ok = true;
        for (col, raw) in std::mem::take(&mut t.mask) {
            let mp = format!("{p}.mask.{col}");
            let c = self.ident(&mp, &col);
            match (c, self.mask(&mp, raw)) {
                (Some(c), Some(m)) => {
                    masks.insert(c, m);
                }
                _ => ok = false,
            }
        }
        self.masks_allowed(p, &name, t, &masks);
        let sharing = match t.sharing.as_deref() {
            None => Sharing::Unconditional,
            Some(s) => Sharing::parse(s).unwrap_or_else(|| {
                self.err(
                    format!("{p}.sharing"),
                    format!("`{s}` is not a sharing class: use unconditional, conditional or none"),
                );
                ok = false;
                Sharing::Unconditional
            }),
        };
        match sharing {
            Sharing::None => self.err(
                format!("{p}.sharing"),
                format!(
                    "table `{name}` is classed as not shared (sharing = \"none\"): it may not \
                     leave the department, so the agent refuses to exchange it; remove this \
                     [[table]] from the file"
                ),
            ),
            Sharing::Conditional if masks.is_empty() && t.columns.is_none() => self.err(
                format!("{p}.sharing"),
                format!(
                    "table `{name}` is shared conditionally: say what leaves with a `columns` \
                     list or a `mask` of the columns that may not leave as they are"
                ),
            ),
            _ => {}
        }
        let scope = match t.filter.take() {
            Some(f) => {
                let s = self.scope(&format!("{p}.filter"), f);
                ok &= s.is_some();
                s
            }
            None => None,
        };
        ok.then_some(Shape {
            masks,
            sharing,
            scope,
        })
    }

    /// A masked column must not be one the exchange finds rows or versions by (see
    /// docs/configuration.md, "Outbound shaping"). One that is not exchanged may still be
    /// masked: a rule may read it, and reject copies then show it masked.
    fn masks_allowed(&mut self, p: &str, name: &str, t: &RawTable, masks: &BTreeMap<Ident, Mask>) {
        for col in masks.keys() {
            let c = col.as_str();
            let mp = format!("{p}.mask.{c}");
            if t.key.as_ref().is_some_and(|k| k.iter().any(|x| x == c)) {
                self.err(&mp, key_masked(name, c));
            }
            let watermark = match &t.watermark {
                RawWatermark::Timestamp { column, .. } => column == c,
                RawWatermark::Control { time, op, .. } => {
                    time.as_deref().unwrap_or("cd_time") == c
                        || op.as_deref().unwrap_or("cd_operation") == c
                }
                RawWatermark::Flag { column, .. } => column == c,
                RawWatermark::Key | RawWatermark::Digest => false,
            };
            if watermark || t.version_column.as_deref() == Some(c) {
                self.err(
                    &mp,
                    format!(
                        "column `{c}` of table `{name}` tells the exchange which version of a \
                         row is newer (a watermark or version column): it cannot be masked"
                    ),
                );
            }
        }
    }

    fn mask(&mut self, p: &str, m: RawMask) -> Option<Mask> {
        let given = [
            m.keep.is_some(),
            m.replace.is_some(),
            m.hash.is_some(),
            m.null.is_some(),
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            self.err(
                p,
                "give exactly one of keep = [first, last], replace = value, hash = \"sm3\" \
                 or \"sha256\", null = true",
            );
            return None;
        }
        if m.salt.is_some() && m.hash.is_none() {
            self.err(format!("{p}.salt"), "a salt goes with hash");
            return None;
        }
        if let Some(k) = m.keep {
            return match k.as_slice() {
                [a, b] if *a >= 0 && *b >= 0 => Some(Mask::Keep {
                    first: usize::try_from(*a).ok()?,
                    last: usize::try_from(*b).ok()?,
                }),
                _ => {
                    self.err(
                        format!("{p}.keep"),
                        "write keep = [first, last]: how many characters stay at the start and \
                         at the end (0 or more each)",
                    );
                    None
                }
            };
        }
        if let Some(r) = m.replace {
            return self
                .constants(p, [(String::from("replace"), r)])
                .pop()
                .map(|(_, v)| Mask::Replace(v));
        }
        if let Some(h) = m.hash {
            let Some(algo) = HashAlgo::parse(&h) else {
                self.err(
                    format!("{p}.hash"),
                    format!("`{h}` is not a hash: use sm3 or sha256"),
                );
                return None;
            };
            let salt = match m.salt {
                Some(s) => match secret::resolve(&s, self.base, self.env) {
                    Ok(v) if v.is_empty() => {
                        self.err(format!("{p}.salt"), "the salt is empty");
                        return None;
                    }
                    Ok(v) => Some(Secret::new(v)),
                    Err(e) => {
                        self.err(format!("{p}.salt"), e);
                        return None;
                    }
                },
                None => None,
            };
            return Some(Mask::Hash { algo, salt });
        }
        if m.null == Some(true) {
            Some(Mask::Null)
        } else {
            self.err(
                format!("{p}.null"),
                "write null = true (or leave the mask out)",
            );
            None
        }
    }

    fn scope(&mut self, p: &str, f: RawFilter) -> Option<Scope> {
        let column = self.ident(&format!("{p}.column"), &f.column);
        let scope = match (f.prefix, f.values) {
            (Some(prefix), None) if !prefix.is_empty() => Scope::Prefix {
                column: column?,
                prefix,
            },
            (None, Some(values)) if !values.is_empty() => {
                let mut out = Vec::with_capacity(values.len());
                for (i, v) in values.into_iter().enumerate() {
                    match v {
                        toml::Value::String(s) => out.push(Value::Text(s)),
                        toml::Value::Integer(n) => out.push(Value::Int(n)),
                        other => {
                            self.err(
                                format!("{p}.in[{i}]"),
                                format!("`{other}` is not a text or an integer"),
                            );
                            return None;
                        }
                    }
                }
                Scope::In {
                    column: column?,
                    values: out,
                }
            }
            (Some(_), None) => {
                self.err(
                    format!("{p}.prefix"),
                    "an empty prefix would let every row out",
                );
                return None;
            }
            (None, Some(_)) => {
                self.err(format!("{p}.in"), "an empty list would let no row out");
                return None;
            }
            _ => {
                self.err(
                    p,
                    "give exactly one of prefix = \"...\" or in = [...], with the column",
                );
                return None;
            }
        };
        Some(scope)
    }
}

/// Why a key column cannot be masked.
pub fn key_masked(table: &str, col: &str) -> String {
    format!(
        "column `{col}` is a key column of table `{table}` and cannot be masked: the exchange \
         finds rows by their key (updates, deletes, a resync's reconciliation) and the province \
         names the records it rejects by it, which a masked key would break or merge. Exchange a \
         surrogate key and mask the identifying column instead"
    )
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{Problem, load_str_with};
    use crate::shape::{Mask, Scope, Sharing};

    const BASE: &str = "[agent]\nid = \"a\"\nstate_dir = \"state\"\ntimezone = \"UTC\"\n\
        [source]\nurl = \"sqlite://src.db?mode=ro\"\n[exchange]\nurl = \"postgres://u@h/db\"\n\
        [[table]]\nsource = \"people\"\nwatermark = { kind = \"timestamp\", column = \"updated_at\" }\n";

    fn env(name: &str) -> Option<String> {
        (name == "FRONTDB_UNIT_SALT").then(|| "the-salt-value".to_owned())
    }

    fn load(extra: &str) -> Result<crate::config::Config, Vec<Problem>> {
        load_str_with(&format!("{BASE}{extra}"), Path::new("/etc/fd/a.toml"), env)
            .map_err(|e| e.problems)
    }

    fn problems(extra: &str) -> Vec<(Option<usize>, String, String)> {
        match load(extra) {
            Ok(_) => Vec::new(),
            Err(p) => p.into_iter().map(|p| (p.line, p.path, p.message)).collect(),
        }
    }

    #[test]
    fn masks_sharing_and_scope_are_read() {
        let cfg = load(
            "sharing = \"conditional\"\n\
             mask = { id_number = { keep = [3, 4] }, phone = { hash = \"sm3\", salt = \"${env:FRONTDB_UNIT_SALT}\" }, \
             name = { replace = \"*\" }, note = { null = true } }\n\
             filter = { column = \"region_code\", prefix = \"2301\" }\n",
        )
        .expect("valid");
        let s = &cfg.tables[0].shape;
        assert_eq!(s.sharing, Sharing::Conditional);
        let kinds: Vec<(&str, &str)> = s
            .masks
            .iter()
            .map(|(c, m)| (c.as_str(), m.kind()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("id_number", "keep"),
                ("name", "replace"),
                ("note", "null"),
                ("phone", "hash")
            ]
        );
        assert!(matches!(
            s.masks.values().next(),
            Some(Mask::Keep { first: 3, last: 4 })
        ));
        assert!(matches!(&s.scope, Some(Scope::Prefix { prefix, .. }) if prefix == "2301"));
        assert!(cfg.secrets().contains(&"the-salt-value".to_owned()));
        assert!(!format!("{cfg:?}").contains("the-salt-value"));
        let lines = crate::shape::describe_masks(&s.masks).join(", ");
        assert!(!lines.contains("the-salt-value"), "{lines}");
    }

    #[test]
    fn a_table_not_shared_is_refused_naming_it() {
        let p = problems("name = \"residents\"\nsharing = \"none\"\n");
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!((p[0].0, p[0].1.as_str()), (Some(13), "table[0].sharing"));
        assert!(
            p[0].2
                .contains("table `residents` is classed as not shared"),
            "{p:?}"
        );
    }

    #[test]
    fn conditional_sharing_needs_columns_or_masks() {
        let p = problems("sharing = \"conditional\"\n");
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].2.contains("`columns`") && p[0].2.contains("`mask`"),
            "{p:?}"
        );
        assert_eq!(
            problems("sharing = \"conditional\"\ncolumns = [\"id\"]\n"),
            Vec::new()
        );
        let p = problems("sharing = \"sometimes\"\n");
        assert!(p[0].2.contains("not a sharing class"), "{p:?}");
    }

    #[test]
    fn bad_masks_are_refused_with_their_key() {
        let cases = [
            (
                "mask = { a = { keep = [3] } }\n",
                "table[0].mask.a.keep",
                "keep = [first, last]",
            ),
            (
                "mask = { a = { keep = [-1, 2] } }\n",
                "table[0].mask.a.keep",
                "0 or more",
            ),
            (
                "mask = { a = { hash = \"md5\" } }\n",
                "table[0].mask.a.hash",
                "sm3 or sha256",
            ),
            (
                "mask = { a = { keep = [1, 1], null = true } }\n",
                "table[0].mask.a",
                "exactly one",
            ),
            (
                "mask = { a = { null = true, salt = \"x\" } }\n",
                "table[0].mask.a.salt",
                "goes with hash",
            ),
            (
                "mask = { a = { hash = \"sm3\", salt = \"${env:NOT_SET_HERE}\" } }\n",
                "table[0].mask.a.salt",
                "NOT_SET_HERE is not set",
            ),
            (
                "mask = { updated_at = { null = true } }\n",
                "table[0].mask.updated_at",
                "cannot be masked",
            ),
            (
                "key = [\"id\"]\nmask = { id = { hash = \"sm3\" } }\n",
                "table[0].mask.id",
                "key column of table `people`",
            ),
        ];
        for (extra, path, words) in cases {
            let p = problems(extra);
            assert!(
                p.iter().any(|(_, pp, m)| pp == path && m.contains(words)),
                "{extra}: {p:?}"
            );
        }
    }

    #[test]
    fn bad_filters_are_refused_with_their_key() {
        let cases = [
            (
                "filter = { column = \"r\" }\n",
                "table[0].filter",
                "exactly one",
            ),
            (
                "filter = { column = \"r\", prefix = \"\" }\n",
                "table[0].filter.prefix",
                "every row",
            ),
            (
                "filter = { column = \"r\", in = [] }\n",
                "table[0].filter.in",
                "no row",
            ),
            (
                "filter = { column = \"r\", in = [1.5] }\n",
                "table[0].filter.in[0]",
                "not a text or an integer",
            ),
            (
                "filter = { column = \"r x\", prefix = \"23\" }\n",
                "table[0].filter.column",
                "",
            ),
            (
                "filter = { column = \"r\", prefix = \"23\", in = [\"a\"] }\n",
                "table[0].filter",
                "exactly one",
            ),
        ];
        for (extra, path, words) in cases {
            let p = problems(extra);
            assert!(
                p.iter().any(|(_, pp, m)| pp == path && m.contains(words)),
                "{extra}: {p:?}"
            );
        }
        let cfg = load("filter = { column = \"r\", in = [\"230102\", 230103] }\n").expect("valid");
        assert_eq!(
            cfg.tables[0]
                .shape
                .scope
                .as_ref()
                .map(ToString::to_string)
                .as_deref(),
            Some("r in (230102, 230103)")
        );
    }
}
