//! PostgreSQL's write and read paths against the real server: batches of new keys copied
//! straight in, one after another over one connection, and known keys merged; an exchange
//! table that refuses COPY; keys of every kind paged through a PostgreSQL source exactly; and
//! a source limited to one connection.

use crate::common::{self, Agent, PgDb, header};

fn table(body: &str) -> String {
    format!("\n[[table]]\n{body}\n")
}

/// A table exchanged by its `updated_at` column, with a lookback of one second.
fn timestamped(source: &str, batch_size: usize) -> String {
    table(&format!(
        "source = \"{source}\"\nbatch_size = {batch_size}\n\
         watermark = {{ kind = \"timestamp\", column = \"updated_at\", lookback = \"1s\" }}"
    ))
}

/// Batches of new keys go straight into the target, each without asking once the one before
/// told the greatest key there. When another writer put one of the next batch's keys there
/// meanwhile (here a trigger, as the first batch arrives), the target refuses the COPY and the
/// batch is merged. A later run with new keys first and then known ones merges the known.
#[tokio::test]
async fn batches_of_new_keys_go_straight_in_and_known_keys_are_merged() {
    let src = PgDb::new("append_then_update").await;
    let tgt = PgDb::new("append_then_update").await;
    let ddl = "CREATE TABLE au (id bigint PRIMARY KEY, v text NOT NULL, \
               updated_at timestamp(6) NOT NULL)";
    src.exec(ddl).await;
    tgt.exec(ddl).await;
    tgt.exec(
        "CREATE FUNCTION sneak() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
         IF NEW.id = 100 THEN INSERT INTO au VALUES (150, 'sneaked', '2000-01-01'); END IF; \
         RETURN NULL; END $$",
    )
    .await;
    tgt.exec("CREATE TRIGGER sneak AFTER INSERT ON au FOR EACH ROW EXECUTE FUNCTION sneak()")
        .await;
    src.exec(
        "INSERT INTO au SELECT g, 'first ' || g, '2026-01-01'::timestamp + g * interval '1 second' \
         FROM generate_series(1, 200) g",
    )
    .await;
    let agent = Agent::new(&format!(
        "{}{}",
        header(&src.url, &tgt.url),
        timestamped("au", 100)
    ));
    // The refused COPY is a transaction rolled back at the target.
    let rollbacks = format!(
        "SELECT xact_rollback FROM pg_stat_database WHERE datname = '{}'",
        tgt.name
    );
    let before = tgt.scalar_i64(&rollbacks).await;
    let out = agent.ok(&["once"]);
    assert!(out.contains("au: 200 row(s) sent"), "{out}");
    assert!(out.contains("0 quarantined"), "{out}");
    let all = "SELECT id::text, v, updated_at::text FROM au ORDER BY id";
    assert_eq!(tgt.rows(all).await, src.rows(all).await);
    common::wait_for(
        "the refused COPY in the target's statistics",
        std::time::Duration::from_secs(10),
        async || tgt.scalar_i64(&rollbacks).await > before,
    )
    .await;

    // New keys first (the earlier change time), then keys the target has, changed.
    src.exec(
        "INSERT INTO au SELECT g, 'new ' || g, '2026-01-02 00:00:00' FROM generate_series(1001, 1100) g",
    )
    .await;
    src.exec(
        "UPDATE au SET v = 'changed ' || id, updated_at = '2026-01-03 00:00:00' WHERE id <= 100",
    )
    .await;
    let out = agent.ok(&["once"]);
    assert!(out.contains("au: 200 row(s) sent"), "{out}");
    assert!(out.contains("0 quarantined"), "{out}");
    assert_eq!(tgt.rows(all).await, src.rows(all).await);
    assert_eq!(
        tgt.rows("SELECT v FROM au WHERE id = 7").await,
        vec![vec![Some("changed 7".to_string())]]
    );
    assert_eq!(tgt.scalar_i64("SELECT count(*) FROM au").await, 300);
    src.drop().await;
    tgt.drop().await;
}

/// An exchange table under row-level security refuses `COPY FROM`: the batches of a first
/// exchange are merged instead, and every row arrives.
#[tokio::test]
async fn an_exchange_table_that_refuses_copy_gets_its_rows_merged() {
    let src = PgDb::new("rls").await;
    let tgt = PgDb::new("rls").await;
    let ddl = "CREATE TABLE guarded (id bigint PRIMARY KEY, v text NOT NULL, \
               updated_at timestamp(6) NOT NULL)";
    src.exec(ddl).await;
    tgt.exec(ddl).await;
    src.exec(
        "INSERT INTO guarded SELECT g, 'row ' || g, '2026-01-01 00:00:00'::timestamp + g * interval '1 second' \
         FROM generate_series(1, 250) g",
    )
    .await;
    // A role of its own, subject to the table's policy (the superuser would bypass it).
    let role = format!("{}_writer", tgt.name);
    common::pg_admin(&format!("CREATE ROLE \"{role}\" LOGIN")).await;
    tgt.exec("ALTER TABLE guarded ENABLE ROW LEVEL SECURITY")
        .await;
    tgt.exec("CREATE POLICY everything ON guarded USING (true) WITH CHECK (true)")
        .await;
    tgt.exec(&format!(
        "GRANT SELECT, INSERT, UPDATE, DELETE ON guarded TO \"{role}\""
    ))
    .await;
    assert!(tgt.url.contains("://postgres@"), "{}", tgt.url);
    let tgt_url = tgt.url.replacen("://postgres@", &format!("://{role}@"), 1);
    let agent = Agent::new(&format!(
        "{}{}",
        header(&src.url, &tgt_url),
        table(
            "source = \"guarded\"\nbatch_size = 100\nwatermark = { kind = \"timestamp\", column = \"updated_at\" }"
        )
    ));
    let (out, log) = agent.ok_logged(&["once"], "info");
    assert!(out.contains("guarded: 250 row(s) sent"), "{out}");
    assert!(out.contains("0 quarantined"), "{out}");
    assert_eq!(
        log.matches("its batches are merged from now on").count(),
        1,
        "{log}"
    );
    let all = "SELECT id::text, v, updated_at::text FROM guarded ORDER BY id";
    assert_eq!(tgt.rows(all).await, src.rows(all).await);
    src.drop().await;
    tgt.drop().await;
    common::pg_admin(&format!("DROP ROLE \"{role}\"")).await;
}

/// PostgreSQL sources are read by `COPY ... TO STDOUT`, whose parameters travel as session
/// settings in text: a key of every kind pages through exactly (no row skipped, none sent
/// twice), a column whose name holds `$1` is not taken for a placeholder, and a read cut by
/// `batch_bytes` half way through its `COPY` leaves nothing behind.
#[tokio::test]
async fn keys_of_every_kind_page_through_a_postgres_source_exactly() {
    let src = PgDb::new("copy_keys").await;
    let tgt = PgDb::new("copy_keys").await;
    let ddl = "CREATE TABLE ck (\"k$1\" text, k_date date, k_ts timestamptz, k_tsn timestamp(6), \
               k_time time(6), k_num numeric(20,6), k_float float8, k_int int8, k_bool bool, \
               k_bytes bytea, v text, \
               PRIMARY KEY (\"k$1\", k_date, k_ts, k_tsn, k_time, k_num, k_float, k_int, k_bool, k_bytes))";
    src.exec(ddl).await;
    tgt.exec(ddl).await;
    // Rows that differ only in the last key columns, so every parameter decides some page.
    let rows = |from: i32, to: i32| {
        format!(
            "INSERT INTO ck SELECT \
               CASE WHEN g % 3 = 0 THEN '监管''$1' ELSE 'a' || (g / 7) END, \
               date '1999-12-31' + (g / 5), \
               timestamptz '2026-03-01 08:00:00.000001+08' + (g / 4) * interval '1.000001 second', \
               timestamp '1970-01-01 00:00:00.5' + (g / 3) * interval '0.000001 second', \
               time '23:59:59.999999' - (g / 2) * interval '1 microsecond', \
               -123456.000001 + (g / 2) * 0.000001, \
               0.1 * (g % 2) + 1e-300, \
               (g % 2) * 9007199254740993, \
               g % 2 = 0, \
               decode(lpad(to_hex(g % 2), 2, '0'), 'hex'), \
               'row ' || g \
             FROM generate_series({from}, {to}) g"
        )
    };
    src.exec(&rows(1, 60)).await;
    let all = "SELECT \"k$1\", k_date::text, k_ts::text, k_tsn::text, k_time::text, \
               k_num::text, k_float::text, k_int::text, k_bool::text, k_bytes::text, v \
               FROM ck ORDER BY \"k$1\", k_date, k_ts, k_tsn, k_time, k_num, k_float, k_int, \
               k_bool, k_bytes";
    let agent = Agent::new(&format!(
        "{}{}",
        header(&src.url, &tgt.url),
        table("source = \"ck\"\nbatch_size = 7\nwatermark = { kind = \"key\" }")
    ));
    let out = agent.ok(&["once"]);
    assert!(out.contains("ck: 60 row(s) sent"), "{out}");
    assert!(out.contains("9 batch(es)"), "{out}");
    assert_eq!(tgt.rows(all).await, src.rows(all).await);

    // Keys above the watermark arrive; nothing already sent is read again.
    src.exec(&rows(61, 80)).await;
    let out = agent.ok(&["once"]);
    let above = src
        .scalar_i64(
            "SELECT count(*) FROM ck WHERE (\"k$1\", k_date, k_ts, k_tsn, k_time, k_num, k_float, \
             k_int, k_bool, k_bytes) > ALL (SELECT \"k$1\", k_date, k_ts, k_tsn, k_time, k_num, \
             k_float, k_int, k_bool, k_bytes FROM ck WHERE substr(v, 5)::int <= 60)",
        )
        .await;
    assert!(above > 0, "the test needs keys above the watermark");
    assert!(out.contains(&format!("ck: {above} row(s) sent")), "{out}");

    // Rows of 24 KB under the smallest byte cap (64 KiB): every read stops after three rows,
    // half way through its COPY, and its connection is closed rather than handed on.
    let capped = Agent::new(&format!(
        "{}{}",
        header(&src.url, &tgt.url),
        table(
            "source = \"ck\"\nbatch_size = 7\nbatch_bytes = 65536\nwatermark = { kind = \"key\" }"
        )
    ));
    src.exec("UPDATE ck SET v = v || repeat('长', 8000)").await;
    tgt.exec("TRUNCATE ck").await;
    let out = capped.ok(&["once"]);
    assert!(out.contains("ck: 80 row(s) sent"), "{out}");
    assert!(out.contains("27 batch(es)"), "{out}");
    assert_eq!(tgt.rows(all).await, src.rows(all).await);
    src.drop().await;
    tgt.drop().await;
}

/// A front-end database often lets the exchange account hold a single connection, and the
/// source is then given `max_connections = 1`. A table's whole cycle (its catalog, the stream
/// of its rows, the rows that changed while it was read, the rows without a change time) goes
/// over that one connection; the stream used to keep it until the cycle ended, and the next
/// query waited for it in vain.
#[tokio::test]
async fn a_source_limited_to_one_connection_is_read_over_it() {
    let src = PgDb::new("one_conn").await;
    let tgt = PgDb::new("one_conn").await;
    let ddl = "CREATE TABLE oc (id bigint PRIMARY KEY, v text NOT NULL, updated_at timestamp(6))";
    src.exec(ddl).await;
    tgt.exec(ddl).await;
    src.exec(
        "INSERT INTO oc SELECT g, 'v' || g, '2026-01-01'::timestamp + g * interval '1 second' \
         FROM generate_series(1, 35) g",
    )
    .await;
    src.exec("INSERT INTO oc VALUES (50, 'no change time', NULL)")
        .await;
    let config = header(&src.url, &tgt.url).replace(
        &format!("url = \"{}\"\n", src.url),
        &format!("url = \"{}\"\nmax_connections = 1\n", src.url),
    );
    assert!(config.contains("max_connections = 1"), "{config}");
    let agent = Agent::new(&format!("{config}{}", timestamped("oc", 10)));
    let all = "SELECT id::text, v, updated_at::text FROM oc ORDER BY id";
    let timed = "SELECT id::text, v, updated_at::text FROM oc WHERE updated_at IS NOT NULL \
                 ORDER BY id";
    let (out, log) = agent.ok_logged(&["once"], "warn");
    assert!(out.contains("oc: 35 row(s) sent"), "{out}");
    assert!(
        log.contains("updated_at NULL are not exchanged until it is set; keys: 50"),
        "{log}"
    );
    assert_eq!(tgt.rows(all).await, src.rows(timed).await);
    src.exec("UPDATE oc SET updated_at = '2026-01-15' WHERE id = 50")
        .await;

    src.exec("UPDATE oc SET v = 'changed', updated_at = '2026-02-01' WHERE id % 3 = 0")
        .await;
    src.exec("INSERT INTO oc VALUES (100, 'new', '2026-02-01')")
        .await;
    let out = agent.ok(&["once"]);
    assert!(out.contains("oc: 13 row(s) sent"), "{out}");
    assert_eq!(tgt.rows(all).await, src.rows(all).await);
    src.drop().await;
    tgt.drop().await;
}

/// Batches of new keys are copied in one after another by one server process, each in a
/// transaction of its own: the exchange table records, by column defaults, the server process
/// and the transaction that wrote every row. (Overlapping each with the next over a second
/// connection was measured slower.)
#[tokio::test]
async fn batches_of_new_keys_are_copied_in_turn_over_one_connection() {
    let src = PgDb::new("direct_turns").await;
    let tgt = PgDb::new("direct_turns").await;
    src.exec(
        "CREATE TABLE dt (id bigint PRIMARY KEY, v text NOT NULL, \
         updated_at timestamp(6) NOT NULL)",
    )
    .await;
    tgt.exec(
        "CREATE TABLE dt (id bigint PRIMARY KEY, v text NOT NULL, \
         updated_at timestamp(6) NOT NULL, writer int NOT NULL DEFAULT pg_backend_pid(), \
         tx bigint NOT NULL DEFAULT txid_current())",
    )
    .await;
    src.exec(
        "INSERT INTO dt SELECT g, 'v' || g, '2026-01-01'::timestamp + g * interval '1 second' \
         FROM generate_series(1, 1000) g",
    )
    .await;
    let agent = Agent::new(&format!(
        "{}{}",
        header(&src.url, &tgt.url),
        timestamped("dt", 100)
    ));
    let out = agent.ok(&["once"]);
    assert!(out.contains("dt: 1000 row(s) sent"), "{out}");
    assert!(out.contains("10 batch(es)"), "{out}");
    let all = "SELECT id::text, v, updated_at::text FROM dt ORDER BY id";
    assert_eq!(tgt.rows(all).await, src.rows(all).await);
    // Each batch its own transaction, every one by the same server process.
    assert_eq!(
        tgt.scalar_i64("SELECT count(DISTINCT tx) FROM dt").await,
        10
    );
    assert_eq!(
        tgt.scalar_i64("SELECT count(DISTINCT writer) FROM dt")
            .await,
        1
    );
    // Each batch's rows came in one transaction: the ten batches of 100 keys in key order.
    assert_eq!(
        tgt.scalar_i64(
            "SELECT count(*) FROM (SELECT tx FROM dt GROUP BY tx \
             HAVING count(*) = 100 AND max(id) - min(id) = 99) b"
        )
        .await,
        10
    );
    src.drop().await;
    tgt.drop().await;
}

/// A PostgreSQL connection prepares a statement once, typed by its first execution's values.
/// The extraction flags of a batch are set by one statement per row over one connection:
/// a first row whose time is NULL must not make the next row's time read as text (the soak
/// found every later flag refused with "invalid byte sequence for encoding UTF8: 0x00").
#[tokio::test]
async fn flags_are_set_whatever_column_is_null_first() {
    let src = PgDb::new("flag_nulls").await;
    let tgt = PgDb::new("flag_nulls").await;
    src.exec(
        "CREATE TABLE fn_src (id bigint PRIMARY KEY, happened timestamp(6), amount numeric(12,2), \
         note text, sync_sign smallint NOT NULL DEFAULT 0, sync_error_desc varchar(200))",
    )
    .await;
    tgt.exec(
        "CREATE TABLE fn_src (id bigint PRIMARY KEY, happened timestamp(6), amount numeric(12,2), \
         note text)",
    )
    .await;
    src.exec(
        "INSERT INTO fn_src (id, happened, amount, note) VALUES \
         (1, NULL, NULL, NULL), (2, '2026-03-04 05:06:07.123456', 12.50, 'n'), \
         (3, NULL, 7.00, NULL), (4, '2026-01-01', NULL, 'm')",
    )
    .await;
    let agent = Agent::new(&format!(
        "{}{}",
        header(&src.url, &tgt.url),
        table(
            "source = \"fn_src\"\nbatch_size = 10\n\
             watermark = { kind = \"flag\", column = \"sync_sign\", error_column = \"sync_error_desc\" }"
        )
    ));
    let out = agent.ok(&["once"]);
    assert!(out.contains("fn_src: 4 row(s) sent"), "{out}");
    let flags = "SELECT id::text, sync_sign::text FROM fn_src ORDER BY id";
    let want: Vec<Vec<Option<String>>> = (1..=4)
        .map(|i| vec![Some(i.to_string()), Some("1".into())])
        .collect();
    assert_eq!(src.rows(flags).await, want);
    let all = "SELECT id::text, happened::text, amount::text, note FROM fn_src ORDER BY id";
    assert_eq!(tgt.rows(all).await, src.rows(all).await);
}
