//! First exchanges of tables whose keys do not follow their change times, as front-end tables
//! have them: integer keys updated in no order, text codes, UUIDs and composite keys. Each
//! ends equal to its source; the batches go straight into the target by COPY (its keys are
//! looked up, not a range of them); and a kill -9 half way loses and duplicates nothing.

use std::time::Duration;

use crate::common::{self, Agent, Daemon, PgDb, header};

/// A table's columns besides `updated_at` and `v`, its key, and the SQL of row `g`'s key
/// values and change time.
struct Shape {
    name: &'static str,
    columns: &'static str,
    key: &'static str,
    values: &'static str,
}

const SHAPES: [Shape; 4] = [
    Shape {
        name: "scattered",
        columns: "id bigint PRIMARY KEY",
        key: r#"["id"]"#,
        values: "g",
    },
    Shape {
        name: "code",
        columns: "code varchar(18) PRIMARY KEY",
        key: r#"["code"]"#,
        values: "'91230100' || upper(substr(md5(g::text), 1, 10))",
    },
    Shape {
        name: "uuid",
        columns: "uid uuid PRIMARY KEY",
        key: r#"["uid"]"#,
        values: "md5(g::text)::uuid",
    },
    Shape {
        name: "composite",
        columns: "region char(6), n integer, PRIMARY KEY (region, n)",
        key: r#"["region", "n"]"#,
        values: "(ARRAY['230102','230103','230104','230108','230109'])[1 + g % 5], g / 5",
    },
];

impl Shape {
    fn ddl(&self) -> String {
        format!(
            "CREATE TABLE {} ({}, v text NOT NULL, updated_at timestamp(6) NOT NULL)",
            self.name, self.columns
        )
    }

    /// Rows `from..=to`, their change times scattered against their keys.
    fn insert(&self, from: i64, to: i64) -> String {
        format!(
            "INSERT INTO {} SELECT {}, '记录 ' || g || repeat('，备注', (g % 7)::int), \
             '2026-01-01'::timestamp + ((g * 7919) % 100003) * interval '1 second' \
             FROM generate_series({from}, {to}) g",
            self.name, self.values
        )
    }

    fn config(&self, src: &PgDb, tgt: &PgDb, batch_size: usize) -> String {
        format!(
            "{}\n[[table]]\nsource = \"{}\"\nkey = {}\nbatch_size = {batch_size}\n\
             watermark = {{ kind = \"timestamp\", column = \"updated_at\", lookback = \"1s\" }}\n",
            header(&src.url, &tgt.url),
            self.name,
            self.key
        )
    }

    fn all(&self) -> String {
        format!("SELECT r::text FROM {} r ORDER BY 1", self.name)
    }
}

/// How every row arrived at the target, by the first word of the statement that inserted it
/// (`COPY` straight in, `INSERT` merged from staging), and how many.
const ARRIVALS: &str = "SELECT how, count(*)::text FROM arrivals GROUP BY how ORDER BY how";

async fn record_arrivals(tgt: &PgDb, table: &str) {
    tgt.exec("CREATE TABLE arrivals (how text NOT NULL)").await;
    tgt.exec(
        "CREATE FUNCTION arrived() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
         INSERT INTO arrivals VALUES (upper(split_part(ltrim(current_query()), ' ', 1))); \
         RETURN NULL; END $$",
    )
    .await;
    tgt.exec(&format!(
        "CREATE TRIGGER arrived AFTER INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION arrived()"
    ))
    .await;
}

/// A first exchange in change-time order, which is no order of the keys: every batch goes
/// straight in by COPY, and the target ends equal to the source. Then rows the target has,
/// changed, and new ones: the changed are merged, and the target is equal again.
#[tokio::test]
async fn first_exchanges_of_keys_in_no_order_go_straight_in() {
    for shape in &SHAPES {
        let src = PgDb::new("key_shapes").await;
        let tgt = PgDb::new("key_shapes").await;
        src.exec(&shape.ddl()).await;
        tgt.exec(&shape.ddl()).await;
        record_arrivals(&tgt, shape.name).await;
        src.exec(&shape.insert(1, 3000)).await;
        let agent = Agent::new(&shape.config(&src, &tgt, 200));
        let out = agent.ok(&["once"]);
        assert!(out.contains("3000 row(s) sent"), "{}: {out}", shape.name);
        assert_eq!(
            tgt.rows(&shape.all()).await,
            src.rows(&shape.all()).await,
            "{}",
            shape.name
        );
        assert_eq!(
            tgt.rows(ARRIVALS).await,
            vec![vec![Some("COPY".to_string()), Some("3000".to_string())]],
            "{}: every batch of the first exchange copied straight in",
            shape.name
        );

        src.exec(&format!(
            "UPDATE {} SET v = v || ' 改', updated_at = '2026-02-01' WHERE ctid IN \
             (SELECT ctid FROM {0} ORDER BY md5(v) LIMIT 100)",
            shape.name
        ))
        .await;
        src.exec(&shape.insert(3001, 3100).replace(
            "'2026-01-01'::timestamp + ((g * 7919) % 100003) * interval '1 second'",
            "'2026-02-02'::timestamp",
        ))
        .await;
        let out = agent.ok(&["once"]);
        assert!(out.contains("200 row(s) sent"), "{}: {out}", shape.name);
        assert_eq!(
            tgt.rows(&shape.all()).await,
            src.rows(&shape.all()).await,
            "{}",
            shape.name
        );
        src.drop().await;
        tgt.drop().await;
    }
}

/// A first exchange killed half way, then run to the end: nothing lost, nothing twice.
#[tokio::test]
async fn a_first_exchange_of_keys_in_no_order_killed_half_way_ends_equal() {
    const ROWS: i64 = 40_000;
    for shape in &SHAPES {
        let src = PgDb::new("key_shapes_kill").await;
        let tgt = PgDb::new("key_shapes_kill").await;
        src.exec(&shape.ddl()).await;
        tgt.exec(&shape.ddl()).await;
        src.exec(&shape.insert(1, ROWS)).await;
        let agent = Agent::new(&shape.config(&src, &tgt, 100));
        let daemon = Daemon::start(&agent, &[]);
        let count = format!("SELECT count(*) FROM {}", shape.name);
        common::wait_for(
            "rows at the exchange",
            Duration::from_secs(60),
            async || tgt.scalar_i64(&count).await >= 1000,
        )
        .await;
        daemon.kill();
        let at_kill = tgt.scalar_i64(&count).await;
        assert!(
            at_kill < ROWS,
            "{}: the kill fell after the exchange ended",
            shape.name
        );
        agent.ok(&["once"]);
        assert_eq!(
            tgt.rows(&shape.all()).await,
            src.rows(&shape.all()).await,
            "{}: killed at {at_kill} rows",
            shape.name
        );
        src.drop().await;
        tgt.drop().await;
    }
}
