//! Unit tests of the SQL each dialect builds.

use super::*;

fn col(name: &str, ty: ColType, native: &str) -> Col {
    Col {
        name: Ident::new(name).expect("ident"),
        ty,
        native: native.into(),
    }
}

fn table() -> TableName {
    TableName::parse("public.up_action").expect("table")
}

#[test]
fn quoting_per_engine() {
    let id = Ident::new("监管_id").expect("ident");
    assert_eq!(Dialect::Postgres.quote(&id), "\"监管_id\"");
    assert_eq!(Dialect::MySql.quote(&id), "`监管_id`");
    assert_eq!(Dialect::MsSql.quote(&id), "[监管_id]");
    assert_eq!(Dialect::MySql.table(&table()), "`public`.`up_action`");
}

#[test]
fn keyset_select_postgres_uses_row_values_and_casts() {
    let cols = [
        col(
            "updated_at",
            ColType::Timestamp,
            "timestamp without time zone",
        ),
        col("id", ColType::Decimal, "numeric(20,0)"),
    ];
    let all = [
        cols[1].clone(),
        cols[0].clone(),
        col("v", ColType::Int, "int4"),
    ];
    let vals = [Value::Int(5), Value::Decimal("7".into())];
    let upper = Value::Int(9);
    let t = table();
    let sql = Dialect::Postgres.select(&Select {
        table: &t,
        columns: &all,
        conds: vec![Cond::After(&cols, &vals), Cond::AtMost(&cols[0], &upper)],
        order: &cols,
        limit: Some(500),
    });
    assert_eq!(
        sql.text,
        "SELECT \"id\", \"updated_at\", \"v\" FROM \"public\".\"up_action\" \
         WHERE (\"updated_at\", \"id\") > ($1::timestamp without time zone, $2::numeric(20,0)) \
         AND \"updated_at\" <= $3::timestamp without time zone \
         ORDER BY \"updated_at\", \"id\" LIMIT 500"
    );
    assert_eq!(sql.params.len(), 3);
}

#[test]
fn keyset_select_mysql_expands_the_row_comparison() {
    let cols = [
        col("ts", ColType::Timestamp, "datetime(6)"),
        col("id", ColType::Int, "int"),
    ];
    let vals = [Value::Int(1), Value::Int(2)];
    let t = TableName::parse("t").expect("t");
    let sql = Dialect::MySql.select(&Select {
        table: &t,
        columns: &cols,
        conds: vec![Cond::After(&cols, &vals)],
        order: &cols,
        limit: Some(10),
    });
    assert_eq!(
        sql.text,
        "SELECT `ts`, `id` FROM `t` WHERE `ts` >= ? AND ((`ts` > ?) OR (`ts` = ? AND `id` > ?)) \
         ORDER BY `ts`, `id` LIMIT 10"
    );
    assert_eq!(
        sql.params,
        vec![Value::Int(1), Value::Int(1), Value::Int(1), Value::Int(2)]
    );
}

#[test]
fn limits_for_mssql_and_oracle() {
    let cols = [col("id", ColType::Int, "int")];
    let t = TableName::parse("t").expect("t");
    let s = Select {
        table: &t,
        columns: &cols,
        conds: vec![],
        order: &cols,
        limit: Some(3),
    };
    assert_eq!(
        Dialect::MsSql.select(&s).text,
        "SELECT TOP (3) [id] FROM [t] ORDER BY [id]"
    );
    assert_eq!(
        Dialect::Oracle.select(&s).text,
        "SELECT \"id\" FROM \"t\" ORDER BY \"id\" FETCH FIRST 3 ROWS ONLY"
    );
}

#[test]
fn upserts_never_let_an_older_row_win() {
    let cols = [
        col("id", ColType::Int, "int"),
        col("updated_at", ColType::Timestamp, "datetime(6)"),
        col("name", ColType::Text, "varchar(50)"),
    ];
    let t = TableName::parse("t").expect("t");
    let u = Upsert {
        table: &t,
        columns: &cols,
        key: &[0],
        version: Some(1),
    };
    assert_eq!(
        Dialect::MySql.upsert_values(&u, 2),
        "INSERT INTO `t` (`id`, `updated_at`, `name`) VALUES (?, ?, ?), (?, ?, ?) \
         ON DUPLICATE KEY UPDATE \
         `name` = IF(`updated_at` IS NULL OR VALUES(`updated_at`) >= `updated_at`, VALUES(`name`), `name`), \
         `updated_at` = IF(`updated_at` IS NULL OR VALUES(`updated_at`) >= `updated_at`, VALUES(`updated_at`), `updated_at`)"
    );
    assert_eq!(
        Dialect::Sqlite.upsert_values(&u, 1),
        "INSERT INTO \"t\" (\"id\", \"updated_at\", \"name\") VALUES (?, ?, ?) \
         ON CONFLICT (\"id\") DO UPDATE SET \"name\" = excluded.\"name\", \
         \"updated_at\" = excluded.\"updated_at\" \
         WHERE \"t\".\"updated_at\" IS NULL OR \"t\".\"updated_at\" <= excluded.\"updated_at\""
    );
    let stage = Ident::new("fd_stage").expect("ident");
    assert_eq!(
        Dialect::Postgres.pg_merge(&u, &stage),
        "INSERT INTO \"t\" AS tgt (\"id\", \"updated_at\", \"name\") \
         SELECT \"id\", \"updated_at\", \"name\" FROM \"fd_stage\" ON CONFLICT (\"id\") \
         DO UPDATE SET \"name\" = EXCLUDED.\"name\", \"updated_at\" = EXCLUDED.\"updated_at\" \
         WHERE tgt.\"updated_at\" IS NULL OR tgt.\"updated_at\" <= EXCLUDED.\"updated_at\""
    );
}

#[test]
fn key_only_tables_insert_or_ignore() {
    let cols = [col("id", ColType::Int, "int")];
    let t = TableName::parse("t").expect("t");
    let u = Upsert {
        table: &t,
        columns: &cols,
        key: &[0],
        version: None,
    };
    assert!(
        Dialect::Sqlite
            .upsert_values(&u, 1)
            .ends_with("ON CONFLICT (\"id\") DO NOTHING")
    );
    assert!(
        Dialect::MySql
            .upsert_values(&u, 1)
            .ends_with("UPDATE `id` = `id`")
    );
}

#[test]
fn deletes_and_flag_marks_bind_every_value() {
    let key = [col("id", ColType::Int, "int4")];
    let ver = col("cd_time", ColType::Timestamp, "timestamp");
    let t = TableName::parse("t").expect("t");
    assert_eq!(
        Dialect::Postgres.delete_row(&t, &key, Some(&ver)),
        "DELETE FROM \"t\" WHERE \"id\" = $1::int4 AND (\"cd_time\" IS NULL OR \"cd_time\" <= $2::timestamp)"
    );
    let flag = col("sync_sign", ColType::Int, "tinyint(1)");
    let err = col("sync_error_desc", ColType::Text, "varchar(200)");
    let cmp = [col("name", ColType::Text, "varchar(50)")];
    assert_eq!(
        Dialect::MySql.mark_row(&t, &flag, Some(&err), &key, &cmp),
        "UPDATE `t` SET `sync_sign` = ?, `sync_error_desc` = ? WHERE `id` = ? AND `sync_sign` = ? AND `name` <=> ?"
    );
    let pg_flag = col("sync_sign", ColType::Int, "smallint");
    assert_eq!(
        Dialect::Postgres.mark_row(
            &t,
            &pg_flag,
            None,
            &key,
            &[col("amt", ColType::Decimal, "numeric")]
        ),
        "UPDATE \"t\" SET \"sync_sign\" = $1::smallint WHERE \"id\" = $2::int4 AND \"sync_sign\" = $3::smallint \
         AND \"amt\"::text IS NOT DISTINCT FROM $4"
    );
}

#[test]
fn ranges_memberships_and_tombstones() {
    let key = [
        col("a", ColType::Int, "int"),
        col("b", ColType::Text, "varchar(9)"),
    ];
    let t = TableName::parse("t").expect("t");
    let hi = [Value::Int(5), Value::Text("x".into())];
    let tuples = [
        vec![Value::Int(1), Value::Text("p".into())],
        vec![Value::Int(2), Value::Text("q".into())],
    ];
    let sql = Dialect::Sqlite.select(&Select {
        table: &t,
        columns: &key,
        conds: vec![Cond::UpTo(&key, &hi), Cond::AnyOf(&key, &tuples)],
        order: &key,
        limit: None,
    });
    assert_eq!(
        sql.text,
        "SELECT \"a\", \"b\" FROM \"t\" WHERE NOT ((\"a\", \"b\") > (?, ?)) \
         AND (\"a\", \"b\") IN ((?, ?), (?, ?)) ORDER BY \"a\", \"b\""
    );
    assert_eq!(sql.params.len(), 6);
    let sql = Dialect::MsSql.select(&Select {
        table: &t,
        columns: &key[..1],
        conds: vec![Cond::AnyOf(&key, &tuples)],
        order: &[],
        limit: None,
    });
    assert!(
        sql.text
            .ends_with("WHERE (([a] = @P1 AND [b] = @P2) OR ([a] = @P3 AND [b] = @P4))"),
        "{}",
        sql.text
    );
    let sql = Dialect::MySql.select(&Select {
        table: &t,
        columns: &key[..1],
        conds: vec![Cond::AnyOf(&key[..1], &[])],
        order: &[],
        limit: None,
    });
    assert!(sql.text.ends_with("WHERE 1 = 0"), "{}", sql.text);
    let op = col("cd_operation", ColType::Text, "varchar(1)");
    assert_eq!(
        Dialect::Postgres.tombstone_row(&t, &[op], &key[..1]),
        "UPDATE \"t\" SET \"cd_operation\" = $1::varchar(1) WHERE \"a\" = $2::int"
    );
}

#[test]
fn unsafe_native_types_are_not_pasted() {
    assert_eq!(safe_type("numeric(12,2)"), Some("numeric(12,2)"));
    assert_eq!(safe_type("int4; drop"), None);
    assert_eq!(safe_type("\"MyEnum\""), None);
}

#[test]
fn postgres_selects_come_with_their_copy_out_form() {
    let k = col("k$1", ColType::Text, "text");
    let at = col("at", ColType::TimestampTz, "timestamp with time zone");
    let t = TableName::parse("监管.t$2").expect("table");
    let cols = [k.clone(), at.clone()];
    let key = [k.clone()];
    let ts = chrono::DateTime::parse_from_rfc3339("2026-11-23T08:00:00.000001+08:00")
        .expect("ts")
        .with_timezone(&chrono::Utc);
    let after = [Value::Text("'$1".into())];
    let at_most = Value::TimestampTz(ts);
    fn sel<'a>(t: &'a TableName, cols: &'a [Col], conds: Vec<Cond<'a>>) -> Select<'a> {
        Select {
            table: t,
            columns: cols,
            conds,
            order: &cols[..1],
            limit: Some(5000),
        }
    }
    let sql = Dialect::Postgres.select(&sel(
        &t,
        &cols,
        vec![Cond::After(&key, &after), Cond::AtMost(&at, &at_most)],
    ));
    assert_eq!(
        sql.text,
        "SELECT \"k$1\", \"at\" FROM \"监管\".\"t$2\" WHERE \"k$1\" > $1::text AND \
         \"at\" <= $2::timestamp with time zone ORDER BY \"k$1\" LIMIT 5000"
    );
    let copy = sql.copy.expect("copy");
    assert_eq!(
        copy.text,
        "COPY (SELECT \"k$1\", \"at\" FROM \"监管\".\"t$2\" WHERE \"k$1\" > \
         (SELECT current_setting('frontdb.p1')::text) AND \"at\" <= \
         (SELECT current_setting('frontdb.p2')::timestamptz::timestamp with time zone) \
         ORDER BY \"k$1\" LIMIT 5000) TO STDOUT (FORMAT binary)"
    );
    assert_eq!(copy.settings, ["'$1", "2026-11-23 00:00:00.000001+00"]);
    assert_eq!(
        Dialect::Postgres.pg_set_params(2),
        "SELECT set_config('frontdb.p1', $1, true), set_config('frontdb.p2', $2, true)"
    );
    // Other engines bind as they always do.
    let my = Dialect::MySql.select(&sel(&t, &cols, vec![Cond::After(&key, &after)]));
    assert_eq!(my.copy, None);
    assert!(my.text.contains("`k$1` > ?"), "{}", my.text);

    // Every kind's text, as PostgreSQL's input functions read it back.
    let date = chrono::NaiveDate::from_ymd_opt(1999, 12, 31).expect("date");
    let time = chrono::NaiveTime::from_hms_micro_opt(23, 59, 59, 5).expect("time");
    let untyped = col("x", ColType::Other, "");
    let cases = [
        (
            Value::Bool(false),
            "false",
            "(SELECT current_setting('frontdb.p1')::bool)",
        ),
        (
            Value::Int(-9_007_199_254_740_993),
            "-9007199254740993",
            "::int8)",
        ),
        (Value::Float(0.1), "0.1", "::float8)"),
        (Value::Float(1e-300), "1e-300", "::float8)"),
        (Value::Float(f64::NEG_INFINITY), "-inf", "::float8)"),
        (
            Value::Decimal("-0.000100".into()),
            "-0.000100",
            "::numeric)",
        ),
        (
            Value::Bytes(vec![0, 0xff]),
            "00ff",
            "(SELECT decode(current_setting('frontdb.p1'), 'hex'))",
        ),
        (Value::Date(date), "1999-12-31", "::date)"),
        (Value::Time(time), "23:59:59.000005", "::time)"),
        (
            Value::Timestamp(date.and_time(time)),
            "1999-12-31 23:59:59.000005",
            "::timestamp)",
        ),
        (Value::Null, "", "\"x\" = NULL"),
    ];
    for (v, text, expr) in cases {
        let sql = Dialect::Postgres.select(&sel(&t, &cols, vec![Cond::Equals(&untyped, &v)]));
        let copy = sql.copy.expect("copy");
        assert_eq!(copy.settings, [text], "{v:?}");
        assert!(copy.text.contains(expr), "{v:?}: {}", copy.text);
    }
    // A year PostgreSQL would not read back as written: the select runs as a query.
    let bc = Value::Date(chrono::NaiveDate::from_ymd_opt(-44, 3, 15).expect("bc"));
    let sql = Dialect::Postgres.select(&sel(&t, &cols, vec![Cond::Equals(&untyped, &bc)]));
    assert_eq!(sql.copy, None);
    assert!(sql.text.contains("\"x\" = $1"), "{}", sql.text);
}

#[test]
fn sql_server_datetime_and_oracle_date_parameters_are_cast_to_the_column_type() {
    let t = table();
    let key = [col("id", ColType::Int, "int")];
    let at = col("changed", ColType::Timestamp, "datetime");
    assert_eq!(
        Dialect::MsSql.delete_row(&t, &key, Some(&at)),
        "DELETE FROM [public].[up_action] WHERE [id] = @P1 \
         AND ([changed] IS NULL OR [changed] <= CAST(@P2 AS datetime))"
    );
    let at2 = col("changed", ColType::Timestamp, "datetime2(7)");
    assert!(
        Dialect::MsSql
            .delete_row(&t, &key, Some(&at2))
            .ends_with("[changed] <= @P2)")
    );
    let day = col("changed", ColType::Timestamp, "date");
    assert!(
        Dialect::Oracle
            .delete_row(&t, &key, Some(&day))
            .ends_with("\"changed\" <= CAST(:2 AS DATE))")
    );
    assert_eq!(
        Dialect::MsSql.count(&t),
        "SELECT COUNT_BIG(*) FROM [public].[up_action]"
    );
}

#[test]
fn rows_after_a_position_or_of_later_transactions() {
    let cols = [
        col(
            "updated_at",
            ColType::Timestamp,
            "timestamp(6) without time zone",
        ),
        col("id", ColType::Int, "bigint"),
    ];
    let at = [Value::Text("2026-12-01 08:00:00".into()), Value::Int(7)];
    let t = TableName::parse("ev").expect("ev");
    let select = |d: Dialect| {
        d.select(&Select {
            table: &t,
            columns: &cols,
            conds: vec![Cond::AfterOrWrittenSince(&cols, &at, 4_000_000_000)],
            order: &cols,
            limit: None,
        })
    };
    let pg = select(Dialect::Postgres);
    // The id is bound, as every value; the comparison is modulo 2^32, as the server's own.
    assert_eq!(
        pg.text,
        "SELECT \"updated_at\", \"id\" FROM \"ev\" WHERE ((\"updated_at\", \"id\") > \
         ($1::timestamp(6) without time zone, $2::bigint) OR (xmin::text::int8 - $3::int8 \
         + 4294967296) % 4294967296 < 2147483648) ORDER BY \"updated_at\", \"id\""
    );
    assert_eq!(pg.params[2], Value::Int(4_000_000_000));
    let copy = pg.copy.expect("read by COPY");
    assert!(
        copy.text.contains("(SELECT current_setting('"),
        "{}",
        copy.text
    );
    assert_eq!(copy.settings[2], "4000000000");
    // Rows elsewhere carry no transaction id: every row qualifies.
    let my = select(Dialect::MySql);
    assert!(
        my.text.ends_with("WHERE 1 = 1 ORDER BY `updated_at`, `id`"),
        "{}",
        my.text
    );
    assert!(my.params.is_empty());
}

#[test]
fn which_tables_hold_rows_is_one_statement_of_exists_probes() {
    let id = col("id", ColType::Int, "integer");
    let flag = col("sync_sign", ColType::Int, "integer");
    let (after, pending) = ([Value::Int(7)], Value::Int(0));
    let (t, other) = (table(), TableName::parse("dn_b").expect("table"));
    let tables = vec![
        (&t, vec![Cond::After(std::slice::from_ref(&id), &after)]),
        (&other, vec![Cond::Equals(&flag, &pending)]),
    ];
    let pg = Dialect::Postgres.which_exist(&tables);
    assert_eq!(
        pg.text,
        "SELECT CAST(0 AS bigint) AS k WHERE EXISTS (SELECT 1 FROM \"public\".\"up_action\" \
         WHERE \"id\" > $1::integer) UNION ALL SELECT CAST(1 AS bigint) AS k WHERE EXISTS \
         (SELECT 1 FROM \"dn_b\" WHERE \"sync_sign\" = $2::integer)"
    );
    assert_eq!(pg.params, vec![Value::Int(7), Value::Int(0)]);
    let my = Dialect::MySql.which_exist(&tables);
    assert!(
        my.text.starts_with("SELECT CAST(0 AS SIGNED) AS k FROM DUAL WHERE EXISTS (SELECT 1 FROM `public`.`up_action` WHERE"),
        "{}",
        my.text
    );
    let lite = Dialect::Sqlite.which_exist(&tables);
    assert!(
        lite.text.starts_with("SELECT 0 AS k WHERE EXISTS"),
        "{}",
        lite.text
    );
    assert!(
        lite.text.contains(" UNION ALL SELECT 1 AS k WHERE EXISTS"),
        "{}",
        lite.text
    );
}

#[test]
fn keys_are_looked_up_as_their_columns_index_compares_them() {
    let t = TableName::parse("ex.t").expect("name");
    let id = col("id", ColType::Int, "integer");
    let region = col("region", ColType::Text, "character(6)");
    let code = col("code", ColType::Text, "character varying(18)");
    assert_eq!(
        Dialect::Postgres.pg_any_key(&t, &[&id], &["int8"]),
        r#"SELECT EXISTS (SELECT 1 FROM "ex"."t" WHERE "id" = ANY($1::int8[]))"#
    );
    assert_eq!(
        Dialect::Postgres.pg_any_key(&t, &[&region, &id], &["bpchar", "int8"]),
        r#"SELECT EXISTS (SELECT 1 FROM unnest($1::bpchar[], $2::int8[]) AS k(k0, k1) JOIN "ex"."t" AS tgt ON tgt."region" = k.k0 AND tgt."id" = k.k1)"#
    );
    let text = Value::Text("x".into());
    assert_eq!(key_array(&id.native, &Value::Int(1)), Some("int8"));
    assert_eq!(key_array(&region.native, &text), Some("bpchar"));
    assert_eq!(key_array(&code.native, &text), Some("text"));
    assert_eq!(key_array("uuid", &text), Some("uuid"));
    // Keys of other types, or a value not of its column's kind, are not looked up.
    assert_eq!(
        key_array("numeric(10,0)", &Value::Decimal("1".into())),
        None
    );
    assert_eq!(key_array(&id.native, &Value::Null), None);
}
