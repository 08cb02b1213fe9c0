//! Unit tests of the SQL the ODBC engine runs on DM8 and KingbaseES (and GBase): paging,
//! `MERGE`/upsert, deletes, the catalog and the open transactions, with Chinese and
//! mixed-case identifiers. No DM or Kingbase server is here: these pin the text.

use super::*;

fn col(name: &str, ty: ColType, native: &str) -> Col {
    Col {
        name: Ident::new(name).expect("ident"),
        ty,
        native: native.into(),
    }
}

/// A DM table of Chinese and mixed-case names, its types as the DM catalog gives them.
fn dm_cols() -> Vec<Col> {
    vec![
        col("统一社会信用代码", ColType::Text, "char(18)"),
        col("RecId", ColType::Int, "number(10,0)"),
        col("企业名称", ColType::Text, "varchar"),
        col("注册资本", ColType::Decimal, "number(18,4)"),
        col("UpdatedAt", ColType::Timestamp, "timestamp"),
        col("成立日期", ColType::Date, "date"),
    ]
}

/// A Kingbase table: its types as `information_schema.columns.udt_name` gives them.
fn kb_cols() -> Vec<Col> {
    vec![
        col("统一社会信用代码", ColType::Text, "bpchar"),
        col("RecId", ColType::Int, "int4"),
        col("企业名称", ColType::Text, "varchar"),
        col("注册资本", ColType::Decimal, "numeric"),
        col("UpdatedAt", ColType::Timestamp, "timestamp"),
        col("成立日期", ColType::Date, "date"),
    ]
}

const DM: Dialect = Dialect::Odbc(Flavor::Dm);
const KB: Dialect = Dialect::Odbc(Flavor::Kingbase);
const GB: Dialect = Dialect::Odbc(Flavor::Gbase);

fn table() -> TableName {
    TableName::parse("QZK.企业_Info").expect("t")
}

fn keyset_page(d: Dialect, c: &[Col]) -> String {
    let t = table();
    let vals = [Value::Text("91230100MA1B2C3D4E".into()), Value::Int(7)];
    let s = d.select(&Select {
        table: &t,
        columns: c,
        conds: vec![Cond::After(&c[..2], &vals)],
        order: &c[..2],
        limit: Some(500),
    });
    assert_eq!(s.params.len(), 4, "{}", s.text);
    assert_eq!(s.text.matches('?').count(), 4, "{}", s.text);
    assert!(s.copy.is_none());
    s.text
}

#[test]
fn dm_pages_by_limit_after_a_keyset_of_chinese_and_mixed_case_columns() {
    assert_eq!(
        keyset_page(DM, &dm_cols()),
        "SELECT \"统一社会信用代码\", \"RecId\", \"企业名称\", \"注册资本\", \"UpdatedAt\", \"成立日期\" \
         FROM \"QZK\".\"企业_Info\" WHERE \"统一社会信用代码\" >= CAST(? AS char(18)) \
         AND ((\"统一社会信用代码\" > CAST(? AS char(18))) OR (\"统一社会信用代码\" = CAST(? AS char(18)) \
         AND \"RecId\" > ?)) ORDER BY \"统一社会信用代码\", \"RecId\" LIMIT 500"
    );
}

#[test]
fn kingbase_pages_by_limit_with_every_parameter_cast_to_its_column() {
    assert_eq!(
        keyset_page(KB, &kb_cols()),
        "SELECT \"统一社会信用代码\", \"RecId\", \"企业名称\", \"注册资本\", \"UpdatedAt\", \"成立日期\" \
         FROM \"QZK\".\"企业_Info\" WHERE \"统一社会信用代码\" >= CAST(? AS bpchar) \
         AND ((\"统一社会信用代码\" > CAST(? AS bpchar)) OR (\"统一社会信用代码\" = CAST(? AS bpchar) \
         AND \"RecId\" > CAST(? AS int4))) ORDER BY \"统一社会信用代码\", \"RecId\" LIMIT 500"
    );
}

#[test]
fn gbase_and_oracle_page_as_their_families_do() {
    let gb = keyset_page(GB, &kb_cols());
    assert!(gb.starts_with("SELECT `统一社会信用代码`, `RecId`"), "{gb}");
    assert!(
        gb.ends_with("ORDER BY `统一社会信用代码`, `RecId` LIMIT 500"),
        "{gb}"
    );
    let ora = keyset_page(Dialect::Odbc(Flavor::Oracle), &dm_cols());
    assert!(ora.ends_with(" FETCH FIRST 500 ROWS ONLY"), "{ora}");
    // Oracle decimals are read as text with `.` whatever the session says.
    assert!(ora.contains("TO_CHAR(\"注册资本\", 'TM9'"), "{ora}");
}

#[test]
fn dm_merges_typed_rows_from_dual_and_only_a_newer_row_wins() {
    let (t, c) = (table(), dm_cols());
    let u = Upsert {
        table: &t,
        columns: &c,
        key: &[0, 1],
        version: Some(4),
    };
    assert_eq!(
        DM.merge(&u, 2),
        "MERGE INTO \"QZK\".\"企业_Info\" tgt USING (SELECT CAST(? AS char(18)) AS \"统一社会信用代码\", \
         CAST(? AS number(10,0)) AS \"RecId\", ? AS \"企业名称\", CAST(? AS number(18,4)) AS \"注册资本\", \
         CAST(? AS timestamp) AS \"UpdatedAt\", CAST(? AS date) AS \"成立日期\" FROM dual UNION ALL \
         SELECT CAST(? AS char(18)), CAST(? AS number(10,0)), ?, CAST(? AS number(18,4)), \
         CAST(? AS timestamp), CAST(? AS date) FROM dual) src ON (tgt.\"统一社会信用代码\" = \
         src.\"统一社会信用代码\" AND tgt.\"RecId\" = src.\"RecId\") WHEN MATCHED THEN UPDATE SET \
         tgt.\"企业名称\" = src.\"企业名称\", tgt.\"注册资本\" = src.\"注册资本\", \
         tgt.\"成立日期\" = src.\"成立日期\", tgt.\"UpdatedAt\" = src.\"UpdatedAt\" \
         WHERE tgt.\"UpdatedAt\" IS NULL OR tgt.\"UpdatedAt\" <= src.\"UpdatedAt\" \
         WHEN NOT MATCHED THEN INSERT (\"统一社会信用代码\", \"RecId\", \"企业名称\", \"注册资本\", \
         \"UpdatedAt\", \"成立日期\") VALUES (src.\"统一社会信用代码\", src.\"RecId\", src.\"企业名称\", \
         src.\"注册资本\", src.\"UpdatedAt\", src.\"成立日期\")"
    );
    // At most 100 rows a statement, as on Oracle.
    assert_eq!(DM.merge_params(6), 600);
    assert_eq!(DM.savepoint().2, None);
}

#[test]
fn kingbase_upserts_on_conflict_and_only_a_newer_row_wins() {
    let (t, c) = (table(), kb_cols());
    let u = Upsert {
        table: &t,
        columns: &c,
        key: &[0, 1],
        version: Some(4),
    };
    assert_eq!(
        KB.upsert_values(&u, 1),
        "INSERT INTO \"QZK\".\"企业_Info\" (\"统一社会信用代码\", \"RecId\", \"企业名称\", \"注册资本\", \
         \"UpdatedAt\", \"成立日期\") VALUES (CAST(? AS bpchar), CAST(? AS int4), CAST(? AS varchar), \
         CAST(? AS numeric), CAST(? AS timestamp), CAST(? AS date)) ON CONFLICT (\"统一社会信用代码\", \
         \"RecId\") DO UPDATE SET \"企业名称\" = excluded.\"企业名称\", \"注册资本\" = excluded.\"注册资本\", \
         \"成立日期\" = excluded.\"成立日期\", \"UpdatedAt\" = excluded.\"UpdatedAt\" \
         WHERE \"企业_Info\".\"UpdatedAt\" IS NULL OR \"企业_Info\".\"UpdatedAt\" <= excluded.\"UpdatedAt\""
    );
    assert_eq!(KB.savepoint().2, Some("RELEASE SAVEPOINT frontdb_part"));
}

#[test]
fn gbase_upserts_on_duplicate_key() {
    let (t, c) = (table(), kb_cols());
    let u = Upsert {
        table: &t,
        columns: &c,
        key: &[0, 1],
        version: Some(4),
    };
    let text = GB.upsert_values(&u, 2);
    assert!(
        text.starts_with(
            "INSERT INTO `QZK`.`企业_Info` (`统一社会信用代码`, `RecId`, `企业名称`, `注册资本`, \
             `UpdatedAt`, `成立日期`) VALUES (?, ?, ?, ?, ?, ?), (?, ?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE"
        ),
        "{text}"
    );
    assert!(
        text.ends_with("`UpdatedAt` = IF(`UpdatedAt` IS NULL OR VALUES(`UpdatedAt`) >= `UpdatedAt`, VALUES(`UpdatedAt`), `UpdatedAt`)"),
        "{text}"
    );
}

#[test]
fn deletes_and_row_marks_compare_null_safely_in_each_family() {
    let t = table();
    let (dm, kb) = (dm_cols(), kb_cols());
    assert_eq!(
        DM.delete_row(&t, &dm[..2], Some(&dm[4])),
        "DELETE FROM \"QZK\".\"企业_Info\" WHERE \"统一社会信用代码\" = CAST(? AS char(18)) \
         AND \"RecId\" = ? AND (\"UpdatedAt\" IS NULL OR \"UpdatedAt\" <= ?)"
    );
    assert_eq!(
        KB.delete_row(&t, &kb[..2], Some(&kb[4])),
        "DELETE FROM \"QZK\".\"企业_Info\" WHERE \"统一社会信用代码\" = CAST(? AS bpchar) \
         AND \"RecId\" = CAST(? AS int4) AND (\"UpdatedAt\" IS NULL OR \"UpdatedAt\" <= CAST(? AS timestamp))"
    );
    let dm_mark = DM.mark_row(&t, &dm[2], None, &dm[..2], &dm[3..5]);
    assert!(
        dm_mark.ends_with(
            "AND DECODE(\"注册资本\", ?, 1, 0) = 1 AND DECODE(\"UpdatedAt\", ?, 1, 0) = 1"
        ),
        "{dm_mark}"
    );
    let kb_mark = KB.mark_row(&t, &kb[2], None, &kb[..2], &kb[3..5]);
    assert!(
        kb_mark.ends_with(
            "\"注册资本\" IS NOT DISTINCT FROM CAST(? AS numeric) \
             AND \"UpdatedAt\" IS NOT DISTINCT FROM CAST(? AS timestamp)"
        ),
        "{kb_mark}"
    );
    let gb_mark = GB.mark_row(&t, &kb[2], None, &kb[..2], &kb[3..5]);
    assert!(
        gb_mark.ends_with("`注册资本` <=> ? AND `UpdatedAt` <=> ?"),
        "{gb_mark}"
    );
    let v = Value::Int(1);
    let exists = DM
        .which_exist(&[(&t, vec![Cond::Greater(&dm[1], &v)])])
        .text;
    assert_eq!(
        exists,
        "SELECT 0 AS k FROM DUAL WHERE EXISTS (SELECT 1 FROM \"QZK\".\"企业_Info\" WHERE \"RecId\" > ?)"
    );
}

/// Every catalog statement binds what it looks up (`?`, as many as the engine module
/// passes) and has nothing formatted into it; each reads the flavor's own views.
#[test]
fn catalog_statements_bind_their_names_and_read_each_engines_views() {
    for f in [
        Flavor::Dm,
        Flavor::Kingbase,
        Flavor::Gbase,
        Flavor::Oracle,
        Flavor::Postgres,
        Flavor::MySql,
    ] {
        let (oldest, n) = f.oldest_transaction();
        for (text, params) in [
            (f.find_table(), 3),
            (f.columns(), 2),
            (f.unique_keys(), 2),
            (f.now(), 0),
            (oldest, n),
        ] {
            assert_eq!(text.matches('?').count(), params, "{f:?}: {text}");
            assert!(!text.contains('{'), "{text}");
        }
        for s in f.session() {
            assert!(!s.contains('?'), "{s}");
        }
    }
    assert!(Flavor::Dm.find_table().contains("all_objects"));
    assert!(Flavor::Dm.columns().contains("all_tab_columns"));
    assert!(Flavor::Dm.unique_keys().contains("all_cons_columns"));
    let (dm, _) = Flavor::Dm.oldest_transaction();
    assert!(dm.contains("FROM V$TRX t JOIN V$SESSIONS s"), "{dm}");
    assert!(dm.contains("t.SESS_ID <> SESSID()"), "{dm}");
    let (kb, n) = Flavor::Kingbase.oldest_transaction();
    assert!(kb.contains("FROM sys_catalog.sys_stat_activity"), "{kb}");
    assert!(kb.contains("pid <> sys_backend_pid()"), "{kb}");
    assert_eq!(n, 1);
    assert!(Flavor::Kingbase.columns().contains("udt_name"));
    assert!(Flavor::Kingbase.session().contains(&"SET TIME ZONE 'UTC'"));
    assert!(
        Flavor::Dm
            .session()
            .contains(&"ALTER SESSION SET NLS_TIMESTAMP_FORMAT = 'YYYY-MM-DD HH24:MI:SS.FF6'")
    );
}

#[test]
fn flavors_are_named_in_configuration_and_told_from_the_drivers_dbms_name() {
    assert_eq!(Flavor::parse("DM"), Some(Flavor::Dm));
    assert_eq!(Flavor::parse("kingbase"), Some(Flavor::Kingbase));
    assert_eq!(Flavor::parse("gbase"), Some(Flavor::Gbase));
    assert_eq!(Flavor::parse("MariaDB"), Some(Flavor::MySql));
    assert_eq!(Flavor::parse("sybase"), None);
    for (name, f) in [
        ("DM", Some(Flavor::Dm)),
        ("DM8 DAMENG", Some(Flavor::Dm)),
        ("KingbaseES", Some(Flavor::Kingbase)),
        ("PostgreSQL", Some(Flavor::Postgres)),
        ("MySQL", Some(Flavor::MySql)),
        ("MariaDB", Some(Flavor::MySql)),
        ("Oracle", Some(Flavor::Oracle)),
        ("GBase 8a", Some(Flavor::Gbase)),
        ("Informix", None),
    ] {
        assert_eq!(Flavor::from_dbms_name(name), f, "{name}");
    }
    for f in [Flavor::Dm, Flavor::Kingbase, Flavor::Gbase] {
        assert_eq!(Flavor::parse(f.name()), Some(f));
    }
}

#[test]
fn oracle_11g_pages_by_rownum_around_the_ordered_select() {
    let c = dm_cols();
    let t = table();
    let s = Dialect::Oracle.select(&Select {
        table: &t,
        columns: &c[..2],
        conds: vec![],
        order: &c[1..2],
        limit: Some(100),
    });
    assert_eq!(
        oracle_rownum(&s.text).as_deref(),
        Some(
            "SELECT * FROM (SELECT \"统一社会信用代码\", \"RecId\" FROM \"QZK\".\"企业_Info\" \
             ORDER BY \"RecId\") WHERE ROWNUM <= 100"
        )
    );
    assert_eq!(oracle_rownum("SELECT 1 FROM dual"), None);
    assert_eq!(
        oracle_major(
            "Oracle Database 11g Enterprise Edition Release 11.2.0.4.0 - 64bit Production"
        ),
        Some(11)
    );
    assert_eq!(
        oracle_major("Oracle Database 19c Enterprise Edition Release 19.0.0.0.0 - Production"),
        Some(19)
    );
    assert_eq!(oracle_major("11.02.0040"), Some(11));
}
