//! `translate` of a `[[table]]`, validated (see [`crate::translate`]).

use std::collections::BTreeMap;

use super::schema::RawTranslate;
use super::validate::V;
use crate::translate::{Pairs, TranslateSpec};

impl V<'_> {
    pub(super) fn translate(
        &mut self,
        p: &str,
        raw: BTreeMap<String, RawTranslate>,
    ) -> Vec<TranslateSpec> {
        let mut out = Vec::new();
        for (col, r) in raw {
            let tp = format!("{p}.translate.{col}");
            let column = self.ident(&tp, &col);
            let pass_unknown = match r.unknown.as_deref() {
                None | Some("reject") => false,
                Some("pass") => true,
                Some(u) => {
                    self.err(
                        format!("{tp}.unknown"),
                        format!("`{u}` is not reject or pass"),
                    );
                    false
                }
            };
            let pairs = match (&r.map, &r.file, &r.table) {
                (Some(m), None, None) => Some(Pairs::Values(
                    m.iter().map(|(a, b)| (a.clone(), b.clone())).collect(),
                )),
                (None, Some(f), None) => crate::translate::read_pairs(&self.base.join(f))
                    .map_err(|e| self.err(format!("{tp}.file"), e))
                    .ok()
                    .map(Pairs::Values),
                (None, None, Some(t)) => {
                    let exchange = match r.database.as_deref() {
                        None | Some("front") => false,
                        Some("exchange") => true,
                        Some(d) => {
                            self.err(
                                format!("{tp}.database"),
                                format!("`{d}` is not front or exchange"),
                            );
                            false
                        }
                    };
                    let table = self.table_name(&format!("{tp}.table"), t);
                    let from = self.ident(
                        &format!("{tp}.from"),
                        r.from.as_deref().unwrap_or("local_code"),
                    );
                    let to = self.ident(&format!("{tp}.to"), r.to.as_deref().unwrap_or("code"));
                    match (table, from, to) {
                        (Some(table), Some(from), Some(to)) => Some(Pairs::Table {
                            exchange,
                            table,
                            from,
                            to,
                        }),
                        _ => None,
                    }
                }
                _ => {
                    self.err(&tp, "give exactly one of map, file or table");
                    None
                }
            };
            if r.table.is_none() {
                for (k, set) in [
                    ("from", r.from.is_some()),
                    ("to", r.to.is_some()),
                    ("database", r.database.is_some()),
                ] {
                    if set {
                        self.err(format!("{tp}.{k}"), "goes with table");
                    }
                }
            }
            if let (Some(column), Some(pairs)) = (column, pairs) {
                out.push(TranslateSpec {
                    column,
                    pairs,
                    pass_unknown,
                });
            }
        }
        out
    }
}
