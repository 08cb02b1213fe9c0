//! The exchange table of a sink that has no catalog to ask (an interface, not a database):
//! what the configuration says it receives, taken from the source table.

use crate::config::TableSpec;
use crate::db::TableSchema;
use crate::ident::{Col, Ident};
use crate::value::{ColType, Value};

/// Every source column under its exchange name (its rename, if any), then the constants,
/// keyed by the table's key under its exchange names. The plan then checks it like any
/// exchange table; what the other side really takes is for its answers to say.
pub fn uncatalogued_target(spec: &TableSpec, src: &TableSchema) -> TableSchema {
    let exchange_name = |name: &Ident| {
        spec.rename
            .iter()
            .find(|(from, _)| from.as_str().eq_ignore_ascii_case(name.as_str()))
            .map_or_else(|| name.clone(), |(_, to)| to.clone())
    };
    let mut columns: Vec<Col> = src
        .columns
        .iter()
        .map(|c| Col {
            name: exchange_name(&c.name),
            ..c.clone()
        })
        .collect();
    for (name, value) in &spec.constants {
        if columns.iter().any(|c| c.name == *name) {
            continue;
        }
        let ty = match value {
            Value::Int(_) => ColType::Int,
            Value::Float(_) => ColType::Float,
            Value::Bool(_) => ColType::Bool,
            _ => ColType::Text,
        };
        columns.push(Col {
            name: name.clone(),
            ty,
            native: "constant".into(),
        });
    }
    let key: Vec<Ident> = spec
        .key
        .as_ref()
        .unwrap_or(&src.primary_key)
        .iter()
        .map(|k| {
            src.column(k)
                .map_or_else(|| k.clone(), |c| exchange_name(&c.name))
        })
        .collect();
    TableSchema {
        name: spec.target.clone(),
        columns,
        primary_key: key.clone(),
        unique_keys: vec![key],
        row_xids: false,
        computed: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ident::TableName;

    fn col(name: &str, ty: ColType) -> Col {
        Col {
            name: Ident::new(name).expect("ident"),
            ty,
            native: "x".into(),
        }
    }

    #[test]
    fn takes_the_source_columns_renamed_with_the_constants_and_the_key() {
        let cfg = crate::config::load_str(
            "[agent]\nid = \"a\"\nstate_dir = \"s\"\ntimezone = \"UTC\"\n[source]\nurl = \"sqlite://x.db\"\n\
             [exchange]\nkind = \"http\"\nurl = \"http://127.0.0.1:1/{table}\"\n[[table]]\nsource = \"t\"\n\
             target = \"jg_t\"\nwatermark = { kind = \"key\" }\nrename = { id = \"ID\" }\n\
             constants = { region = \"230000\", n = 3 }\n",
            std::path::Path::new("/tmp/a.toml"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let src = TableSchema {
            name: TableName::parse("t").expect("name"),
            columns: vec![col("id", ColType::Int), col("name", ColType::Text)],
            primary_key: vec![Ident::new("id").expect("ident")],
            unique_keys: Vec::new(),
            row_xids: true,
            computed: Vec::new(),
        };
        let t = uncatalogued_target(&cfg.tables[0], &src);
        assert_eq!(t.name.to_string(), "jg_t");
        let names: Vec<(&str, ColType)> =
            t.columns.iter().map(|c| (c.name.as_str(), c.ty)).collect();
        assert_eq!(
            names,
            vec![
                ("ID", ColType::Int),
                ("name", ColType::Text),
                ("n", ColType::Int),
                ("region", ColType::Text)
            ]
        );
        assert_eq!(t.primary_key, vec![Ident::new("ID").expect("ident")]);
        assert!(t.has_unique(&t.primary_key));
    }
}
