//! A full resync of a table pulled from an http endpoint (exchange-sim's down pages): the
//! endpoint is read again from its beginning, the front-end ends equal to what it serves
//! (rows it spoilt or lost mended, withdrawn ones removed, its own kept), through a kill -9,
//! and the increments' cursor never moves back.

use std::time::Duration;

use chrono::NaiveDate;

use super::{FRONT_DDL, FRONT_ROWS, down_table, front_count};
use crate::common::{self, Agent, Daemon, MyDb};
use crate::http::Sim;

type Rows = Vec<Vec<Option<String>>>;

/// The feed exchange-sim serves: `rows` inserts, `updates` revisions of the first ids,
/// `deletes` withdrawals of the last ids.
fn feed(rows: u64, updates: u64, deletes: u64, page: u64) -> String {
    format!(
        "[[down]]\ntable = \"dn_notice\"\nrows = {rows}\nupdates = {updates}\n\
         deletes = {deletes}\npage = {page}\n"
    )
}

/// What the front-end must hold after the whole feed, as `FRONT_ROWS` reads it: the last
/// record of each id, none for an id withdrawn. Written from the feed's description, not
/// from exchange-sim's code.
fn served(rows: u64, updates: u64, deletes: u64) -> Rows {
    let mut by_id = std::collections::BTreeMap::new();
    let epoch = NaiveDate::from_ymd_opt(2026, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .expect("date");
    for n in 1..=rows + updates + deletes {
        let time = (epoch + chrono::Duration::seconds(n as i64))
            .format("%Y-%m-%d %H:%M:%S.000000")
            .to_string();
        let batch = format!("20260101{:05}", n % 100_000);
        if n <= rows {
            by_id.insert(
                n,
                (format!("notice {n}"), format!("{n}.50"), "I", time, batch),
            );
        } else if n <= rows + updates {
            let id = n - rows;
            let rev = (
                format!("notice {id} (rev)"),
                format!("{id}.75"),
                "U",
                time,
                batch,
            );
            by_id.insert(id, rev);
        } else {
            by_id.remove(&(rows + 1 - (n - rows - updates)));
        }
    }
    by_id
        .into_iter()
        .map(|(id, (title, amount, op, time, batch))| {
            vec![
                Some(id.to_string()),
                Some(title),
                Some(amount),
                Some(op.to_owned()),
                Some(time),
                Some(batch),
            ]
        })
        .collect()
}

fn pull_agent(f: &MyDb, base: &str) -> Agent {
    Agent::new(&format!(
        "[agent]\nid = \"230000-PULL\"\nstate_dir = \"{{dir}}/state\"\ntimezone = \"UTC\"\n\
         retry_max = \"1s\"\n[source]\nurl = \"{}\"\n\
         [exchange]\nkind = \"http\"\nurl = \"{base}/exchange/{{table}}\"\n{}\
         pull = {{ url = \"{base}/down/{{table}}\" }}\n",
        f.url,
        down_table(""),
    ))
}

/// The cursor of every page the endpoint served, in order.
async fn pages(sim: &Sim) -> Vec<u64> {
    sim.requests()
        .await
        .into_iter()
        .filter(|(_, o, _)| o == "page")
        .map(|(_, _, after)| after.and_then(|a| a.parse().ok()).expect("a cursor"))
        .collect()
}

/// The table's resync as `status --json` shows it.
fn resync_of(agent: &Agent) -> serde_json::Value {
    agent.status_json()["tables"][0]["resync"].clone()
}

#[tokio::test]
async fn a_full_resync_of_a_pulled_table_reads_the_endpoint_again_from_its_beginning() {
    let f = MyDb::new("pullrs").await;
    f.exec(FRONT_DDL).await;
    let sim = Sim::start(&feed(300, 20, 0, 40));
    let agent = pull_agent(&f, &sim.base);
    agent.ok(&["once"]);
    assert_eq!(f.rows(FRONT_ROWS).await, served(300, 20, 0));
    // The front-end loses rows, spoils others, and holds one of its own.
    f.exec(
        "DELETE FROM dn_notice WHERE id BETWEEN 100 AND 109; \
         UPDATE dn_notice SET title = 'spoilt', amount = 0 WHERE id IN (5, 150, 299); \
         INSERT INTO dn_notice VALUES (9999, 'our own', 1, 'I', '2026-02-01', '2026020100001', 1)",
    )
    .await;
    // The endpoint changes meanwhile: more revisions, and its last five ids withdrawn.
    let addr = sim.base.trim_start_matches("http://").to_owned();
    drop(sim);
    let sim = Sim::start_on(&addr, &feed(300, 60, 5, 40));
    let out = agent.ok(&["resync", "--table", "dn"]);
    assert!(
        out.contains("dn: full resync done") && out.contains("no longer serves are kept"),
        "{out}"
    );
    let mut want = served(300, 60, 5);
    assert_eq!(want.len(), 295);
    want.push(
        ["9999", "our own", "1.00", "I", "2026-02-01 00:00:00.000000"]
            .into_iter()
            .chain(["2026020100001"])
            .map(|s| Some(s.to_owned()))
            .collect(),
    );
    let got = f.rows(FRONT_ROWS).await;
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g, w);
    }
    assert_eq!(got.len(), want.len());
    // Every page once, from the very first (no cursor), to the empty one after the last.
    let resync_pages: Vec<u64> = (0..=9).map(|p| p * 40).chain([365]).collect();
    assert_eq!(pages(&sim).await, resync_pages);
    let rs = resync_of(&agent);
    assert_eq!(rs["state"], "done", "{rs}");
    assert_eq!(rs["chunks"], 10, "{rs}");
    assert_eq!(
        rs["rows"].as_i64().unwrap_or(0) + rs["deleted"].as_i64().unwrap_or(0),
        365,
        "{rs}"
    );
    let text = agent.ok(&["status"]);
    assert!(text.contains("no longer serves are kept"), "{text}");
    // The increments go on from their own cursor, not from where the resync began.
    agent.ok(&["once"]);
    let all = pages(&sim).await;
    assert_eq!(all.get(resync_pages.len()), Some(&320), "{all:?}");
    assert_eq!(f.rows(FRONT_ROWS).await, want);
    f.drop().await;
}

#[tokio::test]
async fn a_resync_of_a_pulled_table_killed_mid_way_resumes_and_completes() {
    let f = MyDb::new("pullrskill").await;
    f.exec(FRONT_DDL).await;
    let sim = Sim::start(&feed(20_000, 100, 0, 100));
    let agent = pull_agent(&f, &sim.base);
    agent.ok(&["once"]);
    let want = served(20_000, 100, 0);
    assert_eq!(f.rows(FRONT_ROWS).await, want);
    let before = pages(&sim).await.len();
    f.exec(
        "UPDATE dn_notice SET title = 'spoilt' WHERE id % 1000 = 7; \
         DELETE FROM dn_notice WHERE id BETWEEN 15000 AND 15049 OR id = 20000",
    )
    .await;
    // The resync starts with the daemon, and the daemon dies under it.
    let d = Daemon::start(&agent, &["--full-resync"]);
    common::wait_for(
        "the resync under way",
        Duration::from_secs(60),
        async || {
            let rs = resync_of(&agent);
            rs["state"] == "running" && rs["rows"].as_i64() > Some(0)
        },
    )
    .await;
    d.kill();
    let at_kill = resync_of(&agent);
    assert_eq!(
        at_kill["state"], "running",
        "the kill fell after the resync: {at_kill}"
    );
    let d = Daemon::start(&agent, &[]);
    common::wait_for(
        "the resync to finish",
        Duration::from_secs(120),
        async || resync_of(&agent)["state"] == "done",
    )
    .await;
    let (code, log) = d.stop();
    assert_eq!(code, Some(0), "{log}");
    let got = f.rows(FRONT_ROWS).await;
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g, w);
    }
    assert_eq!(front_count(&f).await, 20_000);
    let rs = resync_of(&agent);
    assert_eq!(rs["resumed"], 1, "{rs}");
    // Each record counted once: the page in flight at the kill was written again, not twice.
    assert_eq!(rs["rows"], 20_100, "{rs}");
    // Resumed after its last written page, not restarted: at most the page in flight at the
    // kill was asked for again. (The increments' own pages start at 20100.)
    let again: Vec<u64> = pages(&sim).await[before..]
        .iter()
        .copied()
        .filter(|&a| a < 20_100)
        .collect();
    assert!(
        (201..=202).contains(&again.len()),
        "{} pages served for 201 pages of records",
        again.len()
    );
    assert_eq!(again.iter().filter(|&&a| a == 0).count(), 1);
    eprintln!(
        "killed with {} of 20100 records resent; {} pages served",
        at_kill["rows"],
        again.len()
    );
    f.drop().await;
}
