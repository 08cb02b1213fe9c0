//! MySQL/MariaDB and SQLite: a batch is upserted by multi-row `INSERT` statements, newer wins.

use std::fmt::Write as _;

use super::{Dialect, Upsert};

impl Dialect {
    /// Multi-row upsert with `rows` rows of placeholders (MySQL/MariaDB and SQLite).
    pub fn upsert_values(self, u: &Upsert<'_>, rows: usize) -> String {
        let names: Vec<String> = u.columns.iter().map(|c| self.quote(&c.name)).collect();
        let mut text = format!(
            "INSERT INTO {} ({}) VALUES ",
            self.table(u.table),
            names.join(", ")
        );
        let mut n = 0;
        for r in 0..rows {
            if r > 0 {
                text.push_str(", ");
            }
            text.push('(');
            for (i, c) in u.columns.iter().enumerate() {
                if i > 0 {
                    text.push_str(", ");
                }
                n += 1;
                text.push_str(&self.param(n, Some(c)));
            }
            text.push(')');
        }
        let updated = self.updated_columns(u);
        match self.family() {
            Dialect::MySql => {
                if updated.is_empty() {
                    let k = &names[u.key[0]];
                    let _ = write!(text, " ON DUPLICATE KEY UPDATE {k} = {k}");
                    return text;
                }
                let newer = u.version.map(|v| {
                    let q = &names[v];
                    format!("{q} IS NULL OR VALUES({q}) >= {q}")
                });
                let sets: Vec<String> = updated
                    .iter()
                    .map(|&i| {
                        let q = &names[i];
                        match &newer {
                            Some(cond) => format!("{q} = IF({cond}, VALUES({q}), {q})"),
                            None => format!("{q} = VALUES({q})"),
                        }
                    })
                    .collect();
                let _ = write!(text, " ON DUPLICATE KEY UPDATE {}", sets.join(", "));
            }
            _ => {
                let keys: Vec<&str> = u.key.iter().map(|&i| names[i].as_str()).collect();
                if updated.is_empty() {
                    let _ = write!(text, " ON CONFLICT ({}) DO NOTHING", keys.join(", "));
                    return text;
                }
                let sets: Vec<String> = updated
                    .iter()
                    .map(|&i| format!("{0} = excluded.{0}", names[i]))
                    .collect();
                let _ = write!(
                    text,
                    " ON CONFLICT ({}) DO UPDATE SET {}",
                    keys.join(", "),
                    sets.join(", ")
                );
                if let Some(v) = u.version {
                    let t = self.quote(&u.table.name);
                    let q = &names[v];
                    let _ = write!(text, " WHERE {t}.{q} IS NULL OR {t}.{q} <= excluded.{q}");
                }
            }
        }
        text
    }
}
