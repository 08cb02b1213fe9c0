//! Whole table cycles through a [`MemorySink`], with an embedded SQLite source and state
//! store: the order of batches, a row the sink refuses, and the agent dying between a
//! delivery and its acknowledgement.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Ctx, Plan, cycle, prepare};
use crate::db::{Db, TableSchema};
use crate::ident::{Col, Ident, TableName};
use crate::sink::memory::{Delivery, MemorySink, NoReceipts};
use crate::state::State;
use crate::value::{ColType, Value};

struct Setup {
    _dir: tempfile::TempDir,
    ctx: Ctx,
    sink: Arc<MemorySink>,
}

fn col(name: &str, ty: ColType, native: &str) -> Col {
    Col {
        name: Ident::new(name).expect("identifier"),
        ty,
        native: native.into(),
    }
}

/// The exchange table: the source's columns and the control columns the agent fills.
fn exchange_schema() -> TableSchema {
    let id = Ident::new("id").expect("identifier");
    TableSchema {
        name: TableName {
            schema: None,
            name: Ident::new("ex_item").expect("identifier"),
        },
        columns: vec![
            col("id", ColType::Int, "integer"),
            col("name", ColType::Text, "text"),
            col("cd_operation", ColType::Text, "text"),
            col("cd_time", ColType::Text, "text"),
            col("cd_batch", ColType::Text, "text"),
        ],
        primary_key: vec![id.clone()],
        unique_keys: vec![vec![id]],
        row_xids: false,
        computed: Vec::new(),
    }
}

/// A SQLite front-end database with table `item`, an agent configured for it (`watermark`
/// and `batch_size`), and a sink that refuses rows named `bad`.
async fn setup(watermark: &str, batch_size: usize, rows: &[(i64, &str)]) -> Setup {
    let dir = tempfile::tempdir().expect("temporary directory");
    let text = format!(
        r#"
[agent]
id = "230000-TEST"
state_dir = "{state}"
timezone = "UTC"

[source]
url = "sqlite://{dir}/front.db"
bootstrap_sql = "front.sql"

[exchange]
url = "sqlite://{dir}/unused.db"

[[table]]
source = "item"
target = "ex_item"
watermark = {watermark}
batch_size = {batch_size}
"#,
        state = dir.path().join("state").display(),
        dir = dir.path().display(),
    );
    let mut sql =
        "CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT, sync_sign INTEGER NOT NULL);\n"
            .to_string();
    for (id, name) in rows {
        sql.push_str(&format!("INSERT INTO item VALUES ({id}, '{name}', 0);\n"));
    }
    std::fs::write(dir.path().join("front.sql"), sql).expect("bootstrap file");
    let cfg = crate::config::load_str(&text, &dir.path().join("agent.toml")).expect("config");
    let front = Db::connect(&cfg.source, "source", false)
        .await
        .expect("SQLite source");
    let state = State::open(&cfg.agent.state_dir)
        .await
        .expect("state store");
    let sink = Arc::new(MemorySink::new(exchange_schema(), |row: &[Value]| {
        (row.get(1) == Some(&Value::Text("bad".into()))).then(|| "name is not allowed".into())
    }));
    let front = Arc::new(front);
    let sides = crate::ctx::Sides::new(front.clone(), sink.clone(), None);
    let ctx = Ctx {
        cfg: Arc::new(cfg),
        front,
        exchange: sink.clone(),
        sides,
        receipts: Arc::new(NoReceipts),
        state: Arc::new(state),
        cancel: CancellationToken::new(),
        probes: Default::default(),
        watch: Default::default(),
    };
    Setup {
        _dir: dir,
        ctx,
        sink,
    }
}

async fn exec(db: &Db, sql: &str) {
    db.exec_many(sql, &[vec![]]).await.expect(sql);
}

async fn plan_of(ctx: &Ctx) -> Plan {
    let spec = &ctx.cfg.tables[0];
    prepare(&ctx.cfg, super::ends(ctx, spec).expect("ends"), spec)
        .await
        .expect("plan")
}

/// Run a cycle until the sink has recorded `n` deliveries in all, then drop it where it
/// stands, as a killed agent would stop, and start again: the state store closed (which
/// waits for what its connections were doing when the cycle was dropped, as a killed
/// process's last commit either landed or did not) and opened afresh, and a new plan.
async fn die_after(s: &mut Setup, plan: &Plan, n: usize) -> Plan {
    let sink = &s.sink;
    sink.silent_after(Some(n));
    let delivered = async {
        while sink.deliveries().len() < n {
            let told = sink.delivered.notified();
            if sink.deliveries().len() >= n {
                break;
            }
            told.await;
        }
    };
    tokio::select! {
        r = cycle(&s.ctx, plan, false) => panic!("the cycle ended before delivery {n}: {r:?}"),
        () = delivered => {}
        () = tokio::time::sleep(Duration::from_secs(30)) => panic!("no delivery {n} within 30 s"),
    }
    sink.silent_after(None);
    s.ctx.state.close().await;
    s.ctx.state = Arc::new(
        State::open(&s.ctx.cfg.agent.state_dir)
            .await
            .expect("state store again"),
    );
    plan_of(&s.ctx).await
}

/// The batch ledger: each batch's id and status.
async fn ledger(ctx: &Ctx) -> Vec<(String, String)> {
    let url = format!("sqlite://{}", ctx.state.path.display());
    let pool = sqlx::SqlitePool::connect(&url).await.expect("state store");
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT id, status FROM batches ORDER BY rowid")
            .fetch_all(&pool)
            .await
            .expect("ledger");
    pool.close().await;
    rows
}

fn names(rows: &[Vec<Value>]) -> Vec<(i64, String)> {
    rows.iter()
        .map(|r| match (&r[0], &r[1]) {
            (Value::Int(i), n) => (*i, n.to_text()),
            other => panic!("unexpected row {other:?}"),
        })
        .collect()
}

#[tokio::test]
async fn a_cycle_delivers_in_order_and_quarantines_what_the_sink_refuses() {
    let rows = [
        (1, "a"),
        (2, "b"),
        (3, "bad"),
        (4, "d"),
        (5, "e"),
        (6, "f"),
        (7, "g"),
    ];
    let s = setup(r#"{ kind = "key" }"#, 3, &rows).await;
    let plan = plan_of(&s.ctx).await;
    let report = cycle(&s.ctx, &plan, false).await.expect("cycle");
    assert_eq!((report.sent, report.rejected, report.batches), (6, 1, 3));
    let held = names(&s.sink.rows());
    let want: Vec<(i64, String)> = rows
        .iter()
        .filter(|(_, n)| *n != "bad")
        .map(|(i, n)| (*i, n.to_string()))
        .collect();
    assert_eq!(held, want);
    // Three batches, each of the next keys, each with its own id and batch number.
    let d = s.sink.deliveries();
    assert_eq!(d.len(), 3);
    let firsts: Vec<serde_json::Value> = d
        .iter()
        .map(|d| {
            let j: serde_json::Value = serde_json::from_slice(&d.bytes).expect("json");
            j["rows"][0]["values"][0]["v"].clone()
        })
        .collect();
    assert_eq!(firsts, [serde_json::json!(1), 4.into(), 7.into()]);
    let ids: std::collections::HashSet<&str> = d.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids.len(), 3);
    let rejects = s.ctx.state.rejects(None, None).await.expect("rejects");
    assert_eq!(rejects.len(), 1);
    assert_eq!(rejects[0].key, "3");
    assert_eq!(rejects[0].origin, crate::state::Origin::Target);
    assert!(rejects[0].reasons[0].contains("name is not allowed"));
    let wm = s.ctx.state.watermark("item").await.expect("watermark");
    assert_eq!(wm.map(|w| w.key), Some(vec![Value::Int(7)]));
}

#[tokio::test]
async fn a_batch_sent_again_after_the_agent_died_is_the_same_batch_byte_for_byte() {
    let rows: Vec<(i64, String)> = (1..=9).map(|i| (i, format!("row {i}"))).collect();
    let rows: Vec<(i64, &str)> = rows.iter().map(|(i, n)| (*i, n.as_str())).collect();
    let mut s = setup(r#"{ kind = "key" }"#, 3, &rows).await;
    let plan = plan_of(&s.ctx).await;
    // The agent dies once the second batch was delivered, before it heard the
    // acknowledgement (the first may or may not have been committed by then).
    let plan = die_after(&mut s, &plan, 2).await;
    let before = s.sink.deliveries();
    let report = cycle(&s.ctx, &plan, false).await.expect("cycle");
    assert!(report.sent >= 6, "{report:?}");
    let after: Vec<Delivery> = s.sink.deliveries()[2..].to_vec();
    // The second batch is sent again, byte for byte, and whatever else is sent again too.
    assert!(
        after.contains(&before[1]),
        "the second batch again: same id, same bytes"
    );
    for d in &after {
        if let Some(first) = before.iter().find(|b| b.id == d.id) {
            assert_eq!(d, first, "a batch sent again is the same batch");
        }
    }
    let all = s.sink.deliveries();
    let ids: std::collections::HashSet<&str> = all.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids.len(), 3, "three batches in all");
    assert_eq!(names(&s.sink.rows()).len(), 9);
    let wm = s.ctx.state.watermark("item").await.expect("watermark");
    assert_eq!(wm.map(|w| w.key), Some(vec![Value::Int(9)]));
}

#[tokio::test]
async fn rows_changed_before_they_are_sent_again_travel_under_a_new_id() {
    let mut s = setup(
        r#"{ kind = "flag", column = "sync_sign" }"#,
        10,
        &[(1, "v1"), (2, "x")],
    )
    .await;
    let plan = plan_of(&s.ctx).await;
    // Delivered, and the agent dies before it set the flags.
    let plan = die_after(&mut s, &plan, 1).await;
    exec(&s.ctx.front, "UPDATE item SET name = 'v2' WHERE id = 1").await;
    cycle(&s.ctx, &plan, false).await.expect("cycle");
    let d = s.sink.deliveries();
    assert_eq!(d.len(), 2);
    assert_ne!(d[1].id, d[0].id, "other rows, another id");
    assert_eq!(names(&s.sink.rows())[0], (1, "v2".to_string()));
    // The same rows as a batch delivered before are a new batch: a receiver that keeps the
    // ids it applied must not drop them.
    for name in ["v1", "v2", "v1"] {
        let sql = format!("UPDATE item SET name = '{name}', sync_sign = 0 WHERE id = 1");
        exec(&s.ctx.front, &sql).await;
        cycle(&s.ctx, &plan, false).await.expect("cycle");
    }
    let d = s.sink.deliveries();
    assert_eq!(d.len(), 5);
    let body = |i: usize| -> serde_json::Value {
        let mut j: serde_json::Value = serde_json::from_slice(&d[i].bytes).expect("json");
        j["rows"][0]["values"].take()
    };
    assert_eq!(body(4)[1], body(2)[1], "v1 both times");
    assert_ne!(d[4].id, d[2].id, "v1 again, after v2: a new batch");
    let ids: std::collections::HashSet<&str> = d.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids.len(), 5);
    assert_eq!(names(&s.sink.rows())[0], (1, "v1".to_string()));
}

#[tokio::test]
async fn a_delivery_that_fails_leaves_the_watermark_and_is_sent_again_as_it_was() {
    use crate::db::ErrorClass;
    let rows = [(1, "a"), (2, "b"), (3, "c")];
    let s = setup(r#"{ kind = "key" }"#, 10, &rows).await;
    let plan = plan_of(&s.ctx).await;
    // The exchange is down: the cycle fails, retriably, and nothing is committed.
    s.sink.fail_next(&[ErrorClass::Unavailable]);
    let e = cycle(&s.ctx, &plan, false)
        .await
        .expect_err("the delivery failed");
    assert!(e.is_retriable(), "{e}");
    assert!(e.to_string().contains("failing on purpose"), "{e}");
    assert_eq!(
        s.ctx.state.watermark("item").await.expect("watermark"),
        None
    );
    assert!(s.sink.deliveries().is_empty());
    let failed = ledger(&s.ctx).await;
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].1, "failed");
    // A person must look at this one: not retriable.
    s.sink.fail_next(&[ErrorClass::Fatal]);
    let e = cycle(&s.ctx, &plan, false)
        .await
        .expect_err("the delivery failed");
    assert!(!e.is_retriable(), "{e}");
    // Tried again: delivered once, under the id of the attempts that failed.
    let report = cycle(&s.ctx, &plan, false).await.expect("cycle");
    assert_eq!((report.sent, report.batches), (3, 1));
    let d = s.sink.deliveries();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].id, failed[0].0, "the same batch, sent again");
    assert_eq!(
        ledger(&s.ctx).await,
        vec![(failed[0].0.clone(), "acked".into())]
    );
    assert_eq!(names(&s.sink.rows()).len(), 3);
    let wm = s.ctx.state.watermark("item").await.expect("watermark");
    assert_eq!(wm.map(|w| w.key), Some(vec![Value::Int(3)]));
}

#[tokio::test]
async fn a_digest_table_deletes_a_row_whose_batch_was_never_committed_here() {
    let mut s = setup(
        r#"{ kind = "digest" }"#,
        10,
        &[(1, "a"), (2, "b"), (3, "c")],
    )
    .await;
    let plan = plan_of(&s.ctx).await;
    // The exchange took the rows; the agent died before it committed them.
    let plan = die_after(&mut s, &plan, 1).await;
    assert_eq!(names(&s.sink.rows()).len(), 3);
    // Meanwhile the source deleted one.
    exec(&s.ctx.front, "DELETE FROM item WHERE id = 2").await;
    cycle(&s.ctx, &plan, false).await.expect("cycle");
    assert_eq!(
        names(&s.sink.rows()),
        vec![(1, "a".to_string()), (3, "c".to_string())]
    );
    // And nothing more the cycle after.
    let report = cycle(&s.ctx, &plan, false).await.expect("cycle");
    assert_eq!((report.sent, report.deleted), (0, 0), "{report:?}");
}
