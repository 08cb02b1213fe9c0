//! A table's scope as a condition: `LIKE` a bound, escaped prefix pattern, or `IN` a list of
//! bound values.

use super::{Binds, Cond, Dialect, Sql, bind_as, fill};
use crate::ident::{Col, TableName};
use crate::shape::Scope;
use crate::value::Value;

impl Dialect {
    /// `SELECT count(*)` of the rows of a table meeting `conds` (its scope).
    pub fn count_where(self, table: &TableName, conds: &[Cond<'_>]) -> Sql {
        let mut params = Binds::default();
        let mut text = self.count(table);
        if !conds.is_empty() {
            let parts: Vec<String> = conds.iter().map(|c| self.cond(c, &mut params)).collect();
            text.push_str(" WHERE ");
            text.push_str(&parts.join(" AND "));
        }
        let types = &params.types;
        let text = fill(&text, |n| {
            self.placeholder(n, types.get(n.wrapping_sub(1)).and_then(|t| t.as_deref()))
        });
        Sql {
            text,
            params: params.values,
            copy: None,
        }
    }

    pub(super) fn within(self, col: &Col, scope: &Scope, params: &mut Binds) -> String {
        let q = self.quote(&col.name);
        match scope {
            Scope::Prefix { prefix, .. } => {
                let pattern = Scope::like_pattern(prefix, self == Dialect::MsSql);
                // Bound as text, not as the column's type: a `char(6)` pattern would be
                // padded with blanks after its `%`.
                let p = bind_as(params, Value::Text(pattern), None);
                format!("{q} LIKE {p} ESCAPE '!'")
            }
            Scope::In { values, .. } => {
                let ps: Vec<String> = values.iter().map(|v| self.bind(params, v, col)).collect();
                format!("{q} IN ({})", ps.join(", "))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::dialect::{Cond, Select};
    use crate::ident::{Ident, TableName};
    use crate::value::ColType;

    fn col() -> Col {
        Col {
            name: Ident::new("region_code").expect("ident"),
            ty: ColType::Text,
            native: "varchar(6)".into(),
        }
    }

    #[test]
    fn a_scope_is_bound_never_spliced() {
        let t = TableName::parse("t").expect("name");
        let c = col();
        let cols = [c.clone()];
        let prefix = Scope::Prefix {
            column: c.name.clone(),
            prefix: "23'01_".into(),
        };
        let within = [Cond::Within(&c, &prefix)];
        for d in [
            Dialect::Postgres,
            Dialect::MySql,
            Dialect::Sqlite,
            Dialect::MsSql,
            Dialect::Oracle,
        ] {
            let sql = d.select(&Select {
                table: &t,
                columns: &cols,
                conds: within.to_vec(),
                order: &[],
                limit: None,
            });
            assert!(!sql.text.contains("23'01"), "{d:?}: {}", sql.text);
            assert!(sql.text.contains("LIKE"), "{}", sql.text);
            assert_eq!(sql.params, vec![Value::Text("23'01!_%".into())], "{d:?}");
        }
        let list = Scope::In {
            column: c.name.clone(),
            values: vec![Value::Text("230102".into()), Value::Text("230103".into())],
        };
        let sql = Dialect::Postgres.select(&Select {
            table: &t,
            columns: &cols,
            conds: vec![Cond::Within(&c, &list)],
            order: &[],
            limit: None,
        });
        assert_eq!(
            sql.text,
            "SELECT \"region_code\" FROM \"t\" WHERE \"region_code\" IN ($1::varchar(6), $2::varchar(6))"
        );
        assert_eq!(sql.params.len(), 2);
        let count = Dialect::MySql.count_where(&t, &[Cond::Within(&c, &prefix)]);
        assert_eq!(
            count.text,
            "SELECT count(*) FROM `t` WHERE `region_code` LIKE ? ESCAPE '!'"
        );
        assert_eq!(count.params, vec![Value::Text("23'01!_%".into())]);
    }
}
