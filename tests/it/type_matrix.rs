//! Column types between engines as integration teams declare them: columns the database
//! computes (generated, identity `GENERATED ALWAYS`) are left to it, in both directions;
//! MariaDB `BIT(n)` arrives at PostgreSQL as a bit string of n digits and back; the type
//! matrix (`type_matrix/`) round-trips each type departments use and `check` refuses each
//! pair that holds no value, naming both types and what would work.

use crate::common::{Agent, MyDb, PgDb, header, sqlite_exec, sqlite_rows};

mod matrix;

/// A table of the configuration read by key.
fn table(source: &str, extra: &str) -> String {
    format!("\n[[table]]\nsource = \"{source}\"\nwatermark = {{ kind = \"key\" }}\n{extra}")
}

#[tokio::test]
async fn generated_columns_on_both_postgres_sides_are_skipped_and_computed_by_the_target() {
    let ddl = "CREATE TABLE item (id bigint PRIMARY KEY, price numeric(10,2) NOT NULL, \
               qty int NOT NULL, total numeric(12,2) GENERATED ALWAYS AS (price * qty) STORED, \
               seq bigint GENERATED ALWAYS AS IDENTITY)";
    let (s, x) = (PgDb::new("gen_s").await, PgDb::new("gen_x").await);
    s.exec(ddl).await;
    x.exec(ddl).await;
    s.exec("INSERT INTO item (id, price, qty) VALUES (1, 2.50, 4), (2, 10.00, 3)")
        .await;
    let agent = Agent::new(&format!("{}{}", header(&s.url, &x.url), table("item", "")));
    let out = agent.ok(&["check"]);
    assert!(
        out.contains(
            "skipped (the database computes them: generated or identity GENERATED ALWAYS): total, seq"
        ),
        "{out}"
    );
    assert!(out.contains("all tables OK"), "{out}");
    let out = agent.ok(&["once"]);
    assert!(out.contains("item: 2 row(s) sent"), "{out}");
    s.exec("UPDATE item SET qty = 5 WHERE id = 2; INSERT INTO item (id, price, qty) VALUES (3, 1.00, 1)")
        .await;
    // A key table sends new keys only: the update is sent by a full resync.
    agent.ok(&["once"]);
    agent.ok(&["resync"]);
    assert_eq!(
        x.rows("SELECT id::text, price::text, qty::text, total::text FROM item ORDER BY id")
            .await,
        vec![
            vec![
                Some("1".into()),
                Some("2.50".into()),
                Some("4".into()),
                Some("10.00".into())
            ],
            vec![
                Some("2".into()),
                Some("10.00".into()),
                Some("5".into()),
                Some("50.00".into())
            ],
            vec![
                Some("3".into()),
                Some("1.00".into()),
                Some("1".into()),
                Some("1.00".into())
            ],
        ]
    );
    // The target numbered its rows itself.
    assert_eq!(
        x.scalar_i64("SELECT count(DISTINCT seq) FROM item").await,
        3
    );
    s.drop().await;
    x.drop().await;
}

#[tokio::test]
async fn generated_columns_at_mariadb_and_sqlite_targets_are_left_to_them() {
    let s = PgDb::new("gen_src").await;
    s.exec(
        "CREATE TABLE item (id bigint PRIMARY KEY, price numeric(10,2) NOT NULL, qty int NOT NULL, \
         total numeric(12,2) GENERATED ALWAYS AS (price * qty) STORED)",
    )
    .await;
    s.exec("INSERT INTO item (id, price, qty) VALUES (1, 2.50, 4), (2, 10.00, 3)")
        .await;
    let my = MyDb::new("gen_my").await;
    my.exec(
        "CREATE TABLE item (id bigint PRIMARY KEY, price decimal(10,2) NOT NULL, qty int NOT NULL, \
         total decimal(12,2) AS (price * qty) STORED, half decimal(12,2) AS (price / 2) VIRTUAL)",
    )
    .await;
    let agent = Agent::new(&format!("{}{}", header(&s.url, &my.url), table("item", "")));
    let out = agent.ok(&["check"]);
    assert!(
        out.contains("computes them: generated or identity GENERATED ALWAYS): total, half"),
        "{out}"
    );
    agent.ok(&["once"]);
    assert_eq!(
        my.rows(
            "SELECT CAST(id AS CHAR), CAST(total AS CHAR), CAST(half AS CHAR) FROM item ORDER BY id"
        )
        .await,
        vec![
            vec![Some("1".into()), Some("10.00".into()), Some("1.25".into())],
            vec![Some("2".into()), Some("30.00".into()), Some("5.00".into())],
        ]
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let lite = dir.path().join("x.sqlite");
    sqlite_exec(
        &lite,
        "CREATE TABLE item (id INTEGER PRIMARY KEY, price TEXT NOT NULL, qty INTEGER NOT NULL, \
         total REAL GENERATED ALWAYS AS (CAST(price AS REAL) * qty) STORED, \
         twice INTEGER GENERATED ALWAYS AS (qty * 2) VIRTUAL)",
    )
    .await;
    let url = format!("sqlite://{}", lite.display());
    let agent = Agent::new(&format!("{}{}", header(&s.url, &url), table("item", "")));
    let out = agent.ok(&["check"]);
    assert!(
        out.contains("computes them: generated or identity GENERATED ALWAYS): total, twice"),
        "{out}"
    );
    agent.ok(&["once"]);
    assert_eq!(
        sqlite_rows(&lite, "SELECT CAST(id AS TEXT), CAST(total AS TEXT), CAST(twice AS TEXT) FROM item ORDER BY id").await,
        vec![
            vec![Some("1".into()), Some("10.0".into()), Some("8".into())],
            vec![Some("2".into()), Some("30.0".into()), Some("6".into())],
        ]
    );
    s.drop().await;
    my.drop().await;
}

#[tokio::test]
async fn a_generated_column_of_the_front_end_table_is_left_to_it_going_down() {
    let (x, f) = (PgDb::new("gen_dx").await, MyDb::new("gen_df").await);
    x.exec(
        "CREATE TABLE dn_fee (id int PRIMARY KEY, price numeric(10,2) NOT NULL, qty int NOT NULL, \
         total numeric(12,2) GENERATED ALWAYS AS (price * qty) STORED)",
    )
    .await;
    x.exec("INSERT INTO dn_fee (id, price, qty) VALUES (1, 3.00, 3)")
        .await;
    f.exec(
        "CREATE TABLE dn_fee (id int PRIMARY KEY, price decimal(10,2) NOT NULL, qty int NOT NULL, \
         total decimal(12,2) AS (price * qty) PERSISTENT)",
    )
    .await;
    let agent = Agent::new(&format!(
        "{}{}",
        header(&f.url, &x.url),
        table("dn_fee", "direction = \"down\"\n")
    ));
    let out = agent.ok(&["check"]);
    assert!(out.contains("direction down"), "{out}");
    assert!(
        out.contains("computes them: generated or identity GENERATED ALWAYS): total"),
        "{out}"
    );
    agent.ok(&["once"]);
    assert_eq!(
        f.rows("SELECT CAST(id AS CHAR), CAST(total AS CHAR) FROM dn_fee")
            .await,
        vec![vec![Some("1".into()), Some("9.00".into())]]
    );
    x.drop().await;
    f.drop().await;
}

#[tokio::test]
async fn a_key_written_into_an_identity_always_column_is_a_problem_check_names() {
    let (s, x) = (PgDb::new("gen_ks").await, PgDb::new("gen_kx").await);
    s.exec("CREATE TABLE item (id bigint PRIMARY KEY, name text)")
        .await;
    x.exec("CREATE TABLE item (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text)")
        .await;
    let agent = Agent::new(&format!("{}{}", header(&s.url, &x.url), table("item", "")));
    let out = agent.run(&["check"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains(
            "exchange column `id` of exchange table public.item is computed by the database"
        ) && stdout.contains("GENERATED BY DEFAULT AS IDENTITY"),
        "{stdout}"
    );
    s.drop().await;
    x.drop().await;
}

#[tokio::test]
async fn mariadb_bit_arrives_at_postgres_as_a_bit_string_of_n_digits_and_goes_back() {
    let my = MyDb::new("bits_my").await;
    my.exec(
        "CREATE TABLE flags (id int PRIMARY KEY, b8 BIT(8), b10 BIT(10), b1 BIT(1), \
         as_text BIT(8), as_int BIT(12), as_bool BIT(1))",
    )
    .await;
    my.exec(
        "INSERT INTO flags VALUES (1, b'10100101', b'1000000001', b'1', b'00000011', b'111111111111', b'0'), \
         (2, b'0', b'0', b'0', b'0', b'0', b'1'), (3, NULL, NULL, NULL, NULL, NULL, NULL)",
    )
    .await;
    let pg = PgDb::new("bits_pg").await;
    pg.exec(
        "CREATE TABLE flags (id int PRIMARY KEY, b8 bit(8), b10 bit varying(16), b1 bit(1), \
         as_text text, as_int int, as_bool boolean)",
    )
    .await;
    let agent = Agent::new(&format!(
        "{}{}",
        header(&my.url, &pg.url),
        table("flags", "")
    ));
    agent.ok(&["check"]);
    let out = agent.ok(&["once"]);
    assert!(out.contains("flags: 3 row(s) sent"), "{out}");
    let norm = "SELECT id::text, b8::text, b10::text, b1::text, as_text, as_int::text, as_bool::text \
                FROM flags ORDER BY id";
    let want = vec![
        vec![
            "1",
            "10100101",
            "1000000001",
            "1",
            "00000011",
            "4095",
            "false",
        ],
        vec!["2", "00000000", "0000000000", "0", "00000000", "0", "true"],
    ];
    let mut got = pg.rows(norm).await;
    assert_eq!(
        got.pop(),
        Some(vec![Some("3".into()), None, None, None, None, None, None])
    );
    let got: Vec<Vec<String>> = got
        .into_iter()
        .map(|r| r.into_iter().map(|c| c.unwrap_or_default()).collect())
        .collect();
    assert_eq!(got, want);

    // And back: PostgreSQL bit strings into MariaDB BIT(n).
    let back = MyDb::new("bits_back").await;
    back.exec("CREATE TABLE flags (id int PRIMARY KEY, b8 BIT(8), b10 BIT(10), b1 BIT(1), as_text text, as_int int, as_bool tinyint(1))")
        .await;
    let agent = Agent::new(&format!(
        "{}{}",
        header(&pg.url, &back.url),
        table("flags", "")
    ));
    agent.ok(&["once"]);
    assert_eq!(
        back.rows("SELECT CAST(id AS CHAR), BIN(b8), BIN(b10), BIN(b1) FROM flags ORDER BY id")
            .await,
        vec![
            vec![
                Some("1".into()),
                Some("10100101".into()),
                Some("1000000001".into()),
                Some("1".into())
            ],
            vec![
                Some("2".into()),
                Some("0".into()),
                Some("0".into()),
                Some("0".into())
            ],
            vec![Some("3".into()), None, None, None],
        ]
    );
    my.drop().await;
    pg.drop().await;
    back.drop().await;
}

#[tokio::test]
async fn check_sample_names_each_row_the_exchange_would_not_take_and_leaves_the_target_as_it_was() {
    let (s, x) = (PgDb::new("sample_s").await, PgDb::new("sample_x").await);
    s.exec(
        "CREATE TABLE item (id int PRIMARY KEY, name text, code text, uscc text, \
         updated_at timestamp(6) NOT NULL DEFAULT now())",
    )
    .await;
    x.exec(
        "CREATE TABLE item (id int PRIMARY KEY, name varchar(5), code text NOT NULL, uscc text, \
         updated_at timestamp(6) NOT NULL)",
    )
    .await;
    s.exec(
        "INSERT INTO item (id, name, code, uscc) VALUES \
         (1, 'new', 'A', '91350100M000100Y43'), (2, 'toolongvalue', 'B', NULL), \
         (3, 'ok', NULL, NULL), (4, 'ok', 'D', '91350100M000100Y44'), (5, 'fine', 'E', NULL)",
    )
    .await;
    x.exec("INSERT INTO item VALUES (1, 'old', 'Z', NULL, '2020-01-01')")
        .await;
    let agent = Agent::new(&format!(
        "{}\n[[table]]\nsource = \"item\"\nwatermark = {{ kind = \"timestamp\", column = \"updated_at\" }}\n\
         rules = [ {{ column = \"uscc\", check = \"uscc\" }} ]\n",
        header(&s.url, &x.url)
    ));
    let out = agent.ok(&["check", "--sample", "50"]);
    assert!(
        out.contains("sample of 5 row(s): 2 would be quarantined, 1 refused by the exchange database (asked in a transaction rolled back)"),
        "{out}"
    );
    assert!(
        out.contains("WARNING — key 2, column name: exchange column name holds at most 5 characters (character varying(5)), the value has 12: `toolongvalue`"),
        "{out}"
    );
    assert!(out.contains("WARNING — key 4, column uscc: "), "{out}");
    assert!(
        out.contains("WARNING — key 3, column code: null value in column \"code\""),
        "{out}"
    );
    assert!(!out.contains("key 1,") && !out.contains("key 5,"), "{out}");
    // Nothing was left behind.
    assert_eq!(
        x.rows("SELECT id::text, name, code FROM item").await,
        vec![vec![Some("1".into()), Some("old".into()), Some("Z".into())]]
    );
    // The default reads a few hundred rows; 0 reads none.
    let out = agent.ok(&["check"]);
    assert!(out.contains("sample of 5 row(s)"), "{out}");
    let out = agent.ok(&["check", "--sample", "0"]);
    assert!(!out.contains("sample of"), "{out}");
    s.drop().await;
    x.drop().await;
}

/// `check` on a timestamp table: the warnings it gives.
fn warnings_of(out: &str) -> Vec<&str> {
    out.lines()
        .filter(|l| l.contains("WARNING — ") && !l.contains("transport"))
        .collect()
}

#[tokio::test]
async fn check_warns_of_a_missing_watermark_index_with_its_ddl_and_not_once_it_exists() {
    let (s, x) = (PgDb::new("idx_s").await, PgDb::new("idx_x").await);
    let ddl = "CREATE TABLE item (id int PRIMARY KEY, name text, updated_at timestamp(6))";
    s.exec(ddl).await;
    x.exec(ddl).await;
    s.exec("INSERT INTO item SELECT g, 'n', now() FROM generate_series(1, 1000) g; ANALYZE item")
        .await;
    let agent = Agent::new(&format!(
        "{}\n[[table]]\nsource = \"item\"\nschedule = \"realtime\"\n\
         watermark = {{ kind = \"timestamp\", column = \"updated_at\" }}\n",
        header(&s.url, &x.url)
    ));
    let out = agent.ok(&["check", "--sample", "0"]);
    let w = warnings_of(&out);
    assert!(
        w.iter().any(|l| l.contains(
            "no index of source table public.item (about 1000 row(s), 0 MB) serves the watermark's order (updated_at, id): each read scans the table every cycle; create one: CREATE INDEX \"item_updated_at_idx\" ON \"public\".\"item\" (\"updated_at\", \"id\")"
        )),
        "{out}"
    );
    assert!(
        w.iter()
            .any(|l| l
                .contains("change column `updated_at` of source table public.item accepts NULL")),
        "{out}"
    );
    // The statement it gives is the one that silences it.
    s.exec(
        "CREATE INDEX \"item_updated_at_idx\" ON \"public\".\"item\" (\"updated_at\", \"id\"); \
            ALTER TABLE item ALTER COLUMN updated_at SET NOT NULL",
    )
    .await;
    let out = agent.ok(&["check", "--sample", "0"]);
    assert_eq!(warnings_of(&out), Vec::<&str>::new(), "{out}");
    // A view has no index of its own: nothing to say of it.
    s.exec("CREATE VIEW item_v AS SELECT id, name, updated_at FROM item")
        .await;
    x.exec("CREATE TABLE item_v (id int PRIMARY KEY, name text, updated_at timestamp(6))")
        .await;
    agent.rewrite(&format!(
        "{}\n[[table]]\nsource = \"item_v\"\nkey = [\"id\"]\n\
         watermark = {{ kind = \"timestamp\", column = \"updated_at\" }}\n",
        header(&s.url, &x.url)
    ));
    let out = agent.ok(&["check", "--sample", "0"]);
    assert!(out.contains("table item_v: OK"), "{out}");
    assert_eq!(warnings_of(&out), Vec::<&str>::new(), "{out}");
    s.drop().await;
    x.drop().await;
}

#[tokio::test]
async fn check_warns_of_missing_indexes_on_mariadb_and_sqlite_and_of_a_digest_table_read_in_realtime()
 {
    let my = MyDb::new("idx_my").await;
    my.exec("CREATE TABLE item (id int PRIMARY KEY, flag int NOT NULL DEFAULT 0, name text, updated_at datetime(6) NOT NULL)")
        .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let lite = dir.path().join("x.sqlite");
    sqlite_exec(&lite, "CREATE TABLE item (id INTEGER PRIMARY KEY, flag INTEGER, name TEXT, updated_at TIMESTAMP NOT NULL); \
                        CREATE TABLE codes (code TEXT PRIMARY KEY, label TEXT)").await;
    let url = format!("sqlite://{}", lite.display());
    let agent = Agent::new(&format!(
        "{}\n[[table]]\nsource = \"item\"\nwatermark = {{ kind = \"timestamp\", column = \"updated_at\" }}\n",
        header(&my.url, &url)
    ));
    let out = agent.ok(&["check"]);
    assert!(
        out.contains("no index of source table")
            && out.contains("CREATE INDEX `item_updated_at_idx` ON `"),
        "{out}"
    );
    my.exec("CREATE INDEX by_time ON item (updated_at)").await;
    let out = agent.ok(&["check"]);
    assert!(!out.contains("no index of source table"), "{out}");

    // SQLite as the side read: a flag table wants its flag indexed; a code table read whole
    // every two seconds is worth a word.
    sqlite_exec(&lite, "INSERT INTO codes VALUES ('a', 'A')").await;
    my.exec("CREATE TABLE codes (code varchar(10) PRIMARY KEY, label text)")
        .await;
    let agent = Agent::new(&format!(
        "{}\n[[table]]\nsource = \"item\"\nwatermark = {{ kind = \"flag\", column = \"flag\" }}\n\
         [[table]]\nsource = \"codes\"\nschedule = \"realtime\"\nwatermark = {{ kind = \"digest\" }}\n",
        header(&url, &my.url)
    ));
    let out = agent.ok(&["check"]);
    assert!(
        out.contains("CREATE INDEX \"item_flag_idx\" ON \"item\" (\"flag\", \"id\")"),
        "{out}"
    );
    assert!(
        out.contains("a digest table is read whole every cycle, and its schedule runs it every 2s"),
        "{out}"
    );
    sqlite_exec(&lite, "CREATE INDEX item_flag ON item (flag)").await;
    let out = agent.ok(&["check"]);
    assert!(!out.contains("no index of source table"), "{out}");
    my.drop().await;
}

#[tokio::test]
async fn a_wrong_port_says_connection_refused_not_only_that_the_pool_timed_out() {
    let x = PgDb::new("refused_x").await;
    // A port nothing listens on: taken from the system, then let go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let wrong = format!("postgres://postgres@127.0.0.1:{port}/nothing");
    let config = header(&wrong, &x.url).replace(
        &format!("url = \"{wrong}\"\n"),
        &format!("url = \"{wrong}\"\nconnect_timeout = \"2s\"\n"),
    );
    let agent = Agent::new(&format!(
        "{config}\n[[table]]\nsource = \"item\"\nwatermark = {{ kind = \"key\" }}\n"
    ));
    let out = agent.run(&["check"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("source: FAILED — cannot connect to the source database")
            && stdout.contains(&format!("connection refused at 127.0.0.1:{port}")),
        "{stdout}"
    );
    x.drop().await;
}

#[tokio::test]
async fn check_sample_asks_mariadb_and_sqlite_targets_too_and_leaves_them_empty() {
    let s = PgDb::new("sample_src").await;
    s.exec("CREATE TABLE item (id int PRIMARY KEY, code text)")
        .await;
    s.exec("INSERT INTO item VALUES (1, 'A'), (2, NULL), (3, 'C')")
        .await;
    let my = MyDb::new("sample_my").await;
    my.exec("CREATE TABLE item (id int PRIMARY KEY, code varchar(10) NOT NULL)")
        .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let lite = dir.path().join("x.sqlite");
    sqlite_exec(
        &lite,
        "CREATE TABLE item (id INTEGER PRIMARY KEY, code TEXT NOT NULL)",
    )
    .await;
    for target in [my.url.clone(), format!("sqlite://{}", lite.display())] {
        let agent = Agent::new(&format!("{}{}", header(&s.url, &target), table("item", "")));
        let out = agent.ok(&["check"]);
        assert!(
            out.contains(
                "sample of 3 row(s): 0 would be quarantined, 1 refused by the exchange database"
            ),
            "{target}: {out}"
        );
        assert!(
            out.contains("WARNING — key 2, column code: "),
            "{target}: {out}"
        );
        assert!(!out.contains("key 1,") && !out.contains("key 3,"), "{out}");
    }
    assert_eq!(my.scalar_i64("SELECT COUNT(*) FROM item").await, 0);
    assert_eq!(
        sqlite_rows(&lite, "SELECT CAST(COUNT(*) AS TEXT) FROM item").await,
        vec![vec![Some("0".into())]]
    );
    s.drop().await;
    my.drop().await;
}
