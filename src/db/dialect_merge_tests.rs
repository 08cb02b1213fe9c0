//! Unit tests of the SQL the SQL Server and Oracle engines run.

use super::*;
use crate::db::chunks;

fn col(name: &str, ty: ColType, native: &str) -> Col {
    Col {
        name: Ident::new(name).expect("ident"),
        ty,
        native: native.into(),
    }
}

fn cols() -> Vec<Col> {
    vec![
        col("id", ColType::Int, "int"),
        col("name", ColType::Text, "nvarchar(50)"),
        col("amount", ColType::Decimal, "decimal(12,2)"),
        col("updated_at", ColType::Timestamp, "datetime2(6)"),
    ]
}

fn table() -> TableName {
    TableName::parse("dbo.up_action").expect("table")
}

#[test]
fn mssql_merge_lets_only_a_newer_row_win() {
    let (t, c) = (table(), cols());
    let u = Upsert {
        table: &t,
        columns: &c,
        key: &[0],
        version: Some(3),
    };
    assert_eq!(
        Dialect::MsSql.merge(&u, 2),
        "MERGE INTO [dbo].[up_action] WITH (HOLDLOCK) AS tgt USING (VALUES \
         (CAST(@P1 AS int), @P2, CAST(@P3 AS decimal(12,2)), CAST(@P4 AS datetime2(6))), \
         (CAST(@P5 AS int), @P6, CAST(@P7 AS decimal(12,2)), CAST(@P8 AS datetime2(6)))) \
         AS src ([id], [name], [amount], [updated_at]) ON tgt.[id] = src.[id] \
         WHEN MATCHED AND (tgt.[updated_at] IS NULL OR tgt.[updated_at] <= src.[updated_at]) \
         THEN UPDATE SET tgt.[name] = src.[name], tgt.[amount] = src.[amount], \
         tgt.[updated_at] = src.[updated_at] \
         WHEN NOT MATCHED THEN INSERT ([id], [name], [amount], [updated_at]) \
         VALUES (src.[id], src.[name], src.[amount], src.[updated_at]);"
    );
    // Without a version column every matched row is replaced.
    let u = Upsert { version: None, ..u };
    let text = Dialect::MsSql.merge(&u, 1);
    assert!(
        text.contains("WHEN MATCHED THEN UPDATE SET tgt.[name] = src.[name], "),
        "{text}"
    );
}

#[test]
fn oracle_merge_unions_typed_rows_and_pads_char_keys() {
    let t = TableName::parse("QZK.UP_ACTION").expect("t");
    let c = [
        col("code", ColType::Text, "char(6)"),
        col("name", ColType::Text, "varchar2(50)"),
        col("amount", ColType::Decimal, "number(12,2)"),
        col("raw", ColType::Bytes, "blob"),
        col("ver", ColType::Timestamp, "timestamp(6)"),
    ];
    let u = Upsert {
        table: &t,
        columns: &c,
        key: &[0],
        version: Some(4),
    };
    assert_eq!(
        Dialect::Oracle.merge(&u, 2),
        "MERGE INTO \"QZK\".\"UP_ACTION\" tgt USING (\
         SELECT CAST(:1 AS char(6)) AS \"code\", :2 AS \"name\", CAST(:3 AS number(12,2)) AS \"amount\", \
         :4 AS \"raw\", CAST(:5 AS timestamp(6)) AS \"ver\" FROM dual UNION ALL \
         SELECT CAST(:6 AS char(6)), :7, CAST(:8 AS number(12,2)), :9, CAST(:10 AS timestamp(6)) FROM dual\
         ) src ON (tgt.\"code\" = src.\"code\") \
         WHEN MATCHED THEN UPDATE SET tgt.\"name\" = src.\"name\", tgt.\"amount\" = src.\"amount\", \
         tgt.\"raw\" = src.\"raw\", tgt.\"ver\" = src.\"ver\" \
         WHERE tgt.\"ver\" IS NULL OR tgt.\"ver\" <= src.\"ver\" \
         WHEN NOT MATCHED THEN INSERT (\"code\", \"name\", \"amount\", \"raw\", \"ver\") \
         VALUES (src.\"code\", src.\"name\", src.\"amount\", src.\"raw\", src.\"ver\")"
    );
}

#[test]
fn key_only_merges_only_insert() {
    let t = table();
    let c = [col("a", ColType::Int, "int"), col("b", ColType::Int, "int")];
    let u = Upsert {
        table: &t,
        columns: &c,
        key: &[0, 1],
        version: None,
    };
    let text = Dialect::MsSql.merge(&u, 1);
    assert!(!text.contains("WHEN MATCHED"), "{text}");
    assert!(
        text.contains("ON tgt.[a] = src.[a] AND tgt.[b] = src.[b] WHEN NOT MATCHED THEN INSERT"),
        "{text}"
    );
    let text = Dialect::Oracle.merge(&u, 1);
    assert!(!text.contains("WHEN MATCHED"), "{text}");
    assert!(text.ends_with("VALUES (src.\"a\", src.\"b\")"), "{text}");
}

#[test]
fn merges_and_key_lookups_stay_below_the_parameter_limit() {
    let c = cols();
    let rows: Vec<Vec<Value>> = (0..5000).map(|i| vec![Value::Int(i); c.len()]).collect();
    let d = Dialect::MsSql;
    let parts = chunks(&rows, c.len(), d.merge_params(c.len()));
    assert!(parts.len() > 1);
    for (s, e) in &parts {
        assert!((e - s) * c.len() < d.max_params(), "{s}..{e}");
        assert!(e - s <= 1000);
    }
    assert_eq!(parts.iter().map(|(s, e)| e - s).sum::<usize>(), rows.len());
    // A wide table: 300 columns, 6 rows a statement (1800 parameters).
    assert_eq!(chunks(&rows[..20], 300, d.merge_params(300))[0], (0, 6));
    // A table wider than the limit still writes a row at a time (the server refuses it).
    assert_eq!(chunks(&rows[..2], 3000, d.merge_params(3000))[0], (0, 1));
    let o = Dialect::Oracle;
    assert_eq!(chunks(&rows, c.len(), o.merge_params(c.len()))[0], (0, 100));
    // Key lookups: 500 keys of 5 columns would be 2500 parameters on SQL Server.
    assert_eq!(d.keys_per_select(5, 500), 400);
    assert_eq!(d.keys_per_select(1, 500), 500);
    assert_eq!(d.keys_per_select(3000, 500), 1);
    assert_eq!(o.keys_per_select(1, 5000), 1000);
    assert_eq!(Dialect::Postgres.keys_per_select(5, 500), 500);
    let key = [col("a", ColType::Int, "int"), col("b", ColType::Int, "int")];
    let tuples: Vec<Vec<Value>> = (0..d.keys_per_select(2, 5000))
        .map(|i| vec![Value::Int(i as i64), Value::Int(0)])
        .collect();
    let t = table();
    let sql = d.select(&Select {
        table: &t,
        columns: &key,
        conds: vec![Cond::AnyOf(&key, &tuples)],
        order: &[],
        limit: None,
    });
    assert!(sql.params.len() < d.max_params(), "{}", sql.params.len());
    assert!(sql.text.contains(&format!("@P{}", sql.params.len())));
    assert!(!sql.text.contains(&format!("@P{}", sql.params.len() + 1)));
}

#[test]
fn deletes_and_tombstones_bind_every_value() {
    let t = table();
    let key = [col("id", ColType::Int, "int")];
    let ver = col("updated_at", ColType::Timestamp, "datetime2(6)");
    let op = col("cd_operation", ColType::Text, "char(1)");
    assert_eq!(
        Dialect::MsSql.delete_row(&t, &key, Some(&ver)),
        "DELETE FROM [dbo].[up_action] WHERE [id] = @P1 \
         AND ([updated_at] IS NULL OR [updated_at] <= @P2)"
    );
    assert_eq!(
        Dialect::MsSql.tombstone_row(&t, std::slice::from_ref(&op), &key),
        "UPDATE [dbo].[up_action] SET [cd_operation] = @P1 WHERE [id] = @P2"
    );
    let okey = [col("code", ColType::Text, "char(6)")];
    assert_eq!(
        Dialect::Oracle.delete_row(&t, &okey, Some(&ver)),
        "DELETE FROM \"dbo\".\"up_action\" WHERE \"code\" = CAST(:1 AS char(6)) \
         AND (\"updated_at\" IS NULL OR \"updated_at\" <= :2)"
    );
    assert_eq!(
        Dialect::Oracle.tombstone_row(&t, &[op], &okey),
        "UPDATE \"dbo\".\"up_action\" SET \"cd_operation\" = CAST(:1 AS char(1)) \
         WHERE \"code\" = CAST(:2 AS char(6))"
    );
}

#[test]
fn oracle_key_lookups_and_marks_match_char_keys() {
    let t = TableName::parse("T").expect("t");
    let key = [
        col("code", ColType::Text, "char(6)"),
        col("n", ColType::Int, "number(10)"),
    ];
    let tuples = [
        vec![Value::Text("a".into()), Value::Int(1)],
        vec![Value::Text("b".into()), Value::Int(2)],
    ];
    let sql = Dialect::Oracle.select(&Select {
        table: &t,
        columns: &key,
        conds: vec![Cond::AnyOf(&key, &tuples)],
        order: &key,
        limit: Some(10),
    });
    assert_eq!(
        sql.text,
        "SELECT \"code\", \"n\" FROM \"T\" WHERE (\"code\", \"n\") IN \
         ((CAST(:1 AS char(6)), :2), (CAST(:3 AS char(6)), :4)) \
         ORDER BY \"code\", \"n\" FETCH FIRST 10 ROWS ONLY"
    );
    assert_eq!(sql.params.len(), 4);
    let flag = col("sync_sign", ColType::Int, "number(1)");
    let text = Dialect::Oracle.mark_row(&t, &flag, None, &key[..1], &key[..1]);
    assert_eq!(
        text,
        "UPDATE \"T\" SET \"sync_sign\" = :1 WHERE \"code\" = CAST(:2 AS char(6)) \
         AND \"sync_sign\" = :3 AND DECODE(\"code\", CAST(:4 AS char(6)), 1, 0) = 1"
    );
    let text = Dialect::MsSql.mark_row(&t, &flag, None, &key[..1], &key[1..]);
    assert_eq!(
        text,
        "UPDATE [T] SET [sync_sign] = @P1 WHERE [code] = @P2 AND [sync_sign] = @P3 \
         AND ([n] = @P4 OR ([n] IS NULL AND @P4 IS NULL))"
    );
}

#[test]
fn savepoints_per_engine() {
    assert_eq!(
        Dialect::MsSql.savepoint(),
        (
            "SAVE TRANSACTION frontdb_part",
            "ROLLBACK TRANSACTION frontdb_part",
            None
        )
    );
    assert_eq!(Dialect::Oracle.savepoint().2, None);
    assert_eq!(
        Dialect::MySql.savepoint().2,
        Some("RELEASE SAVEPOINT frontdb_part")
    );
}

#[test]
fn mssql_reads_decimals_and_money_as_exact_text() {
    let dec = col("amount", ColType::Decimal, "decimal(12,2)");
    let money = col("fee", ColType::Decimal, "smallmoney");
    assert_eq!(
        Dialect::MsSql.select_expr(&dec),
        "CONVERT(varchar(100), [amount])"
    );
    assert_eq!(
        Dialect::MsSql.select_expr(&money),
        "CONVERT(varchar(100), [fee], 2)"
    );
    let other = col("g", ColType::Other, "uniqueidentifier");
    assert_eq!(
        Dialect::MsSql.select_expr(&other),
        "CONVERT(nvarchar(max), [g])"
    );
}
