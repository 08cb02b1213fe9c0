//! Outbound shaping end to end: masked columns never leave unmasked (the receivers, the state
//! store, the logs, the rejects and their export are searched for every source value of a
//! masked column), sharing classes refused or shown, and a table's scope (`filter`) holding
//! through updates that move rows out of it, deletes and full resyncs.
//!
//! Each receiver kind has a function returning everything it holds as text
//! ([`pg_holdings`], [`my_holdings`], [`sqlite_holdings`] for exchange-sim's store, which the
//! HTTP and SOAP exchanges fill, [`file_holdings`] for the file exchange's directory): a new
//! exchange kind adds its own and runs [`masked_scenario`] against it.

use crate::common::{Agent, MyDb, PgDb, rejects};
use crate::http::Sim;

mod filter;
mod receivers;

pub use receivers::{file_holdings, my_holdings, pg_holdings, sqlite_holdings};

/// The masks of the scenario: what each masked column becomes.
const MASKS: &str = "mask = { id_number = { keep = [3, 4] }, name = { keep = [1, 0] }, \
    phone = { hash = \"sm3\", salt = \"${file:salt.txt}\" }, note = { null = true }, \
    uscc = { replace = \"已脱敏\" } }\n\
    sharing = \"conditional\"\n\
    rules = [ { id = \"ID\", column = \"id_number\", check = \"id_number\", message = \"身份证号码校验位错误\" }, \
      { id = \"PHONE\", column = \"phone\", check = \"regex\", pattern = \"^139\" } ]\n";

const SALT: &str = "salt-never-to-be-seen-7f3a";

const NAMES: [&str; 6] = [
    "欧阳娜娜",
    "诸葛孔明",
    "司马相如",
    "上官婉儿",
    "东方明珠",
    "慕容复生",
];

/// An 18-character ID number from its first 17, with its check character (GB 11643).
fn id_number(first17: &str) -> String {
    const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let sum: u32 = first17
        .bytes()
        .zip(W)
        .map(|(c, w)| u32::from(c - b'0') * w)
        .sum();
    let check = b"10X98765432"[(sum % 11) as usize] as char;
    format!("{first17}{check}")
}

/// One source row of the scenario.
struct Person {
    id: i64,
    id_number: String,
    name: &'static str,
    phone: String,
    note: String,
    uscc: String,
    /// NULL for row 4: exchange-sim rejects it (`required`).
    remark: Option<String>,
}

/// Six people; row 3's ID number has a wrong check character and row 5's phone fails the
/// regex: both are quarantined by the rules, on masked columns.
fn people() -> Vec<Person> {
    (1..=6)
        .map(|i| {
            let mut id = id_number(&format!("23010219800{i}0{i}12{i}"));
            if i == 3 {
                let last = if id.ends_with('1') { '2' } else { '1' };
                id.pop();
                id.push(last);
            }
            Person {
                id: i,
                id_number: id,
                name: NAMES[(i - 1) as usize],
                phone: format!("{}1234567{i}", if i == 5 { "188" } else { "139" }),
                note: format!("机密备注第{i}号-{}", 4000 + i),
                uscc: format!("91230100MA1B{i:06}"),
                remark: (i != 4).then(|| format!("公开说明{i}")),
            }
        })
        .collect()
}

/// Every source value of a masked column, and the salt: none may be found anywhere.
fn secrets() -> Vec<String> {
    let mut out = vec![SALT.to_owned()];
    for p in people() {
        out.extend([p.id_number, p.name.to_owned(), p.phone, p.note, p.uscc]);
    }
    out
}

/// Fail naming each secret found in `what`.
fn assert_clean(place: &str, what: &str) {
    let found: Vec<String> = secrets()
        .into_iter()
        .filter(|s| what.contains(s.as_str()))
        .collect();
    assert!(
        found.is_empty(),
        "{place} holds unmasked values {found:?}:\n{}",
        what.chars().take(3000).collect::<String>()
    );
}

/// The masked ID number of row `i`, as the exchange must hold it.
fn masked_id(i: usize) -> String {
    let p = &people()[i - 1];
    format!("230{}{}", "*".repeat(11), &p.id_number[14..])
}

fn insert_people_pg() -> String {
    let rows: Vec<String> = people()
        .iter()
        .map(|p| {
            format!(
                "({}, '{}', '{}', '{}', '{}', '{}', {}, '2301{:02}', timestamp '2026-11-01 08:00:00' + interval '{} minute')",
                p.id,
                p.id_number,
                p.name,
                p.phone,
                p.note,
                p.uscc,
                p.remark
                    .as_deref()
                    .map_or("NULL".to_owned(), |r| format!("'{r}'")),
                p.id,
                p.id
            )
        })
        .collect();
    format!("INSERT INTO people VALUES {};", rows.join(", "))
}

const PG_PEOPLE: &str = "CREATE TABLE people (id int PRIMARY KEY, id_number varchar(18), \
    name text, phone varchar(64), note text, uscc text, remark text, region_code varchar(6), \
    updated_at timestamp(0) NOT NULL);";

/// Where the scenario delivers, and how the province rejects row 4 there.
enum Receiver {
    Pg(PgDb),
    My(MyDb),
    Http(Sim),
    Soap(Sim),
    /// The file exchange's directory (`out/`, and `returns/` for the platform's error files).
    File(tempfile::TempDir),
}

impl Receiver {
    async fn prepare(&self) {
        let reject_table_pg = "CREATE TABLE exchange_reject (id serial PRIMARY KEY, table_name text, \
            record_key text, batch_id text, error_code text, error_message text, \
            rejected_at timestamptz DEFAULT now());";
        match self {
            Receiver::Pg(db) => db.exec(&format!("{PG_PEOPLE}{reject_table_pg}")).await,
            Receiver::My(db) => {
                db.exec(
                    "CREATE TABLE people (id int PRIMARY KEY, id_number varchar(18), name text, \
                     phone varchar(64), note text, uscc text, remark text, region_code varchar(6), \
                     updated_at datetime(0) NOT NULL)",
                )
                .await;
                db.exec(
                    "CREATE TABLE exchange_reject (id bigint AUTO_INCREMENT PRIMARY KEY, \
                     table_name varchar(100), record_key varchar(200), batch_id varchar(200), \
                     error_code varchar(20), error_message varchar(500), \
                     rejected_at datetime(6) DEFAULT CURRENT_TIMESTAMP(6))",
                )
                .await;
            }
            Receiver::Http(_) | Receiver::Soap(_) => {}
            Receiver::File(dir) => {
                for d in ["out", "returns"] {
                    std::fs::create_dir(dir.path().join(d)).expect("mkdir");
                }
            }
        }
    }

    /// `[exchange]` and `[feedback]`.
    fn sections(&self) -> String {
        let feedback =
            "[feedback]\nkind = \"table\"\nconfirm = \"1h\"\nmirror_table = \"frontdb_reject\"\n";
        match self {
            Receiver::Pg(db) => format!("[exchange]\nurl = \"{}\"\n{feedback}", db.url),
            Receiver::My(db) => format!("[exchange]\nurl = \"{}\"\n{feedback}", db.url),
            Receiver::Http(sim) => format!(
                "[exchange]\nkind = \"http\"\nurl = \"{}/exchange/{{table}}\"\n\
                 [feedback]\nmirror_table = \"frontdb_reject\"\n",
                sim.base
            ),
            Receiver::Soap(sim) => format!(
                "[exchange]\nkind = \"soap\"\nurl = \"{}/soap/{{table}}\"\n\
                 [exchange.soap]\nnamespace = \"http://exchange.example.gov.cn/ws\"\n\
                 operation = \"pushData\"\n\
                 [feedback]\nmirror_table = \"frontdb_reject\"\n",
                sim.base
            ),
            Receiver::File(dir) => format!(
                "[exchange]\nkind = \"file\"\ndir = \"{0}/out\"\nreturn_dir = \"{0}/returns\"\n\
                 [feedback]\nmirror_table = \"frontdb_reject\"\n",
                dir.path().display()
            ),
        }
    }

    /// What the table needs besides the masks with this exchange.
    fn table_keys(&self) -> &'static str {
        match self {
            Receiver::File(_) => "class_code = \"A0101\"\n",
            _ => "",
        }
    }

    /// The province rejects row 4 (exchange-sim did as it took it: its remark is missing).
    async fn reject_row_4(&self) {
        let sql = "INSERT INTO exchange_reject (table_name, record_key, batch_id, error_code, error_message) \
                   VALUES ('people', '4', 'B1', 'E102', '数据不规范')";
        match self {
            Receiver::Pg(db) => db.exec(sql).await,
            Receiver::My(db) => db.exec(sql).await,
            Receiver::Http(_) | Receiver::Soap(_) => {}
            // The platform's error file, naming the table.
            Receiver::File(dir) => std::fs::write(
                dir.path().join("returns/z_people.csv"),
                "table,key,code,message\r\npeople,4,E102,数据不规范\r\n",
            )
            .expect("error file"),
        }
    }

    async fn holdings(&self) -> String {
        match self {
            Receiver::Pg(db) => pg_holdings(db).await,
            Receiver::My(db) => my_holdings(db).await,
            Receiver::Http(sim) | Receiver::Soap(sim) => sqlite_holdings(&sim.store()).await,
            Receiver::File(dir) => file_holdings(dir.path()),
        }
    }
}

/// Run the masking scenario against a receiver: two rows quarantined by rules on masked
/// columns, row 4 rejected by the province, and every place searched.
async fn masked_scenario(receiver: Receiver) {
    let src = PgDb::new("shape_src").await;
    src.exec(&format!("{PG_PEOPLE}{}", insert_people_pg()))
        .await;
    src.exec(include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/sql/postgres/rejects_mirror.sql"
    )))
    .await;
    receiver.prepare().await;
    let agent = Agent::new(&format!(
        "[agent]\nid = \"230100-SHAPE\"\nstate_dir = \"{{dir}}/state\"\ntimezone = \"Asia/Shanghai\"\n\
         region_code = \"230100\"\n\
         [source]\nurl = \"{}\"\n{}\n\
         [[table]]\nsource = \"people\"\nwatermark = {{ kind = \"timestamp\", column = \"updated_at\" }}\n{}{MASKS}",
        src.url,
        receiver.sections(),
        receiver.table_keys()
    ));
    std::fs::write(agent.dir.path().join("salt.txt"), format!("{SALT}\n")).expect("salt");
    let mut logs = String::new();
    let (out, err) = agent.ok_logged(&["check"], "debug");
    assert!(out.contains("sharing: conditional"), "{out}");
    assert!(
        out.contains("masked: id_number: keep [3, 4]") && out.contains("phone: hash sm3 salted"),
        "{out}"
    );
    logs.push_str(&out);
    logs.push_str(&err);
    let (out, err) = agent.ok_logged(&["once"], "debug");
    logs.push_str(&out);
    logs.push_str(&err);
    receiver.reject_row_4().await;
    // The province's rejection is read, then every reject is sent again on request (the
    // rules refuse rows 3 and 5 again, exchange-sim row 4).
    for args in [&["once"][..], &["rejects", "resubmit", "--all"], &["once"]] {
        let (out, err) = agent.ok_logged(args, "debug");
        logs.push_str(&out);
        logs.push_str(&err);
    }

    // What arrived: the four rows the rules let through (exchange-sim refused row 4 after
    // it arrived), masked.
    let held = receiver.holdings().await;
    for (i, p) in people().iter().enumerate().map(|(i, p)| (i + 1, p)) {
        let sent = i != 3 && i != 5;
        assert_eq!(held.contains(&masked_id(i)), sent, "row {i}: {held}");
        if sent {
            let name: String = p.name.chars().take(1).chain("***".chars()).collect();
            assert!(held.contains(&name), "row {i}: {name} not in {held}");
        }
    }
    assert!(held.contains("已脱敏"), "{held}");
    assert_clean("the receiver", &held);

    // The rejects: two rule failures and the province's, every copy masked.
    let list = rejects(&agent, &[]);
    assert_eq!(list.len(), 3, "{list:#?}");
    let by_key = |k: &str| {
        list.iter()
            .find(|r| r["key"] == k)
            .unwrap_or_else(|| panic!("no reject of {k}: {list:#?}"))
    };
    let r3 = by_key("3");
    assert_eq!(r3["origin"], "rule");
    let reason = r3["reasons"][0].as_str().unwrap_or_default();
    assert!(
        reason
            .starts_with("[ID] id_number: 身份证号码校验位错误 — is not a valid citizen ID number")
            && reason.contains(&masked_id(3)),
        "{reason}"
    );
    assert_eq!(r3["row"]["id_number"], masked_id(3));
    assert_eq!(r3["row"]["note"], serde_json::Value::Null);
    assert_eq!(
        r3["row"]["remark"], "公开说明3",
        "unmasked columns stay as they are"
    );
    let r5 = by_key("5");
    assert!(
        r5["reasons"][0]
            .as_str()
            .is_some_and(|m| m.starts_with("[PHONE] phone: does not match `^139` (value `")),
        "{r5}"
    );
    let r4 = by_key("4");
    assert_eq!(r4["origin"], "province", "{r4}");
    assert_eq!(r4["row"]["id_number"], masked_id(4), "{r4}");
    let mut shown = String::new();
    for r in &list {
        shown.push_str(&agent.ok(&["rejects", "show", &r["id"].to_string()]));
    }
    assert!(
        shown.contains("re-sent on request") || shown.contains("sent again on request"),
        "{shown}"
    );
    let export = agent.ok(&["rejects", "export", "--csv"]);
    assert!(export.lines().count() == 4, "{export}");
    assert_clean(
        "rejects list",
        &serde_json::Value::from(list.clone()).to_string(),
    );
    assert_clean("rejects show", &shown);
    assert_clean("rejects export", &export);
    assert_clean("status", &agent.ok(&["status", "--json"]));

    // The mirror table, in the front-end database, for the business system.
    let mirror = src
        .rows("SELECT m::text FROM frontdb_reject m")
        .await
        .concat()
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(mirror.lines().count(), 3, "{mirror}");
    assert_clean("the mirror table", &mirror);

    // The state store: every table and the raw bytes of its files (the WAL too).
    let state = sqlite_holdings(&agent.dir.path().join("state/state.db")).await;
    assert!(
        state.contains(&masked_id(3)),
        "the reject copies are there: {state}"
    );
    assert_clean("the state store", &state);
    assert_clean("the agent's log", &logs);
    assert!(logs.contains("people"), "the log was captured: {logs}");
}

#[tokio::test]
async fn masked_values_never_leave_through_a_postgres_exchange() {
    masked_scenario(Receiver::Pg(PgDb::new("shape_pg").await)).await;
}

#[tokio::test]
async fn masked_values_never_leave_through_a_mariadb_exchange() {
    masked_scenario(Receiver::My(MyDb::new("shape_my").await)).await;
}

#[tokio::test]
async fn masked_values_never_leave_through_an_http_exchange() {
    let sim = Sim::start(
        "[[table]]\nname = \"people\"\nversion = \"updated_at\"\nrequired = [\"remark\"]\n",
    );
    masked_scenario(Receiver::Http(sim)).await;
}

#[tokio::test]
async fn masked_values_never_leave_through_a_soap_exchange() {
    let sim = Sim::start(
        "[[table]]\nname = \"people\"\nversion = \"updated_at\"\nrequired = [\"remark\"]\n",
    );
    masked_scenario(Receiver::Soap(sim)).await;
}

#[tokio::test]
async fn masked_values_never_leave_through_a_file_exchange() {
    masked_scenario(Receiver::File(tempfile::tempdir().expect("dir"))).await;
}

/// The configuration of a one-table agent from PostgreSQL to PostgreSQL.
fn one_table(src: &PgDb, tgt: &PgDb, table: &str) -> String {
    format!(
        "[agent]\nid = \"230100-SHAPE\"\nstate_dir = \"{{dir}}/state\"\ntimezone = \"Asia/Shanghai\"\n\
         [source]\nurl = \"{}\"\n[exchange]\nurl = \"{}\"\n\
         [[table]]\nsource = \"people\"\nwatermark = {{ kind = \"timestamp\", column = \"updated_at\" }}\n{table}",
        src.url, tgt.url
    )
}

#[tokio::test]
async fn sharing_none_is_refused_and_conditional_is_shown() {
    let src = PgDb::new("shape_sh").await;
    let tgt = PgDb::new("shape_sh").await;
    src.exec(PG_PEOPLE).await;
    tgt.exec(PG_PEOPLE).await;
    let agent = Agent::new(&one_table(
        &src,
        &tgt,
        "name = \"residents\"\nsharing = \"none\"\n",
    ));
    for args in [&["check"][..], &["check", "--offline"], &["once"], &["run"]] {
        let out = agent.run(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("table[0].sharing")
                && err.contains("table `residents` is classed as not shared"),
            "{args:?}: {err}"
        );
    }
    agent.rewrite(&one_table(&src, &tgt, "sharing = \"conditional\"\n"));
    let out = agent.run(&["check"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("shared conditionally"), "{err}");

    agent.rewrite(&one_table(
        &src,
        &tgt,
        "sharing = \"conditional\"\ncolumns = [\"id\", \"region_code\", \"updated_at\"]\n\
         filter = { column = \"region_code\", prefix = \"2301\" }\n",
    ));
    let out = agent.ok(&["check"]);
    assert!(out.contains("sharing: conditional"), "{out}");
    assert!(
        out.contains("only rows where region_code starts with `2301` leave"),
        "{out}"
    );
    let status = agent.status_json();
    assert_eq!(status["tables"][0]["sharing"], "conditional", "{status}");
    assert_eq!(
        status["tables"][0]["filter"], "region_code starts with `2301`",
        "{status}"
    );
    let text = agent.ok(&["status"]);
    assert!(text.contains("sharing: conditional"), "{text}");

    // A mask of the key (the primary key, not named in the file) is refused by check.
    agent.rewrite(&one_table(
        &src,
        &tgt,
        "mask = { id = { hash = \"sm3\" } }\n",
    ));
    let out = agent.run(&["check"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("column `id` is a key column of table `people` and cannot be masked")
            && text.contains("Exchange a surrogate key and mask the identifying column instead"),
        "{text}"
    );
    // A prefix of a column that is not text is refused, and a filter of a column that
    // does not exist.
    agent.rewrite(&one_table(
        &src,
        &tgt,
        "filter = { column = \"id\", prefix = \"1\" }\n",
    ));
    let out = agent.run(&["check"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("filter: column `id` of source table public.people is `integer`, and a prefix needs a text column (use in = [...] for other kinds)"),
        "{text}"
    );
    agent.rewrite(&one_table(
        &src,
        &tgt,
        "filter = { column = \"region\", in = [1] }\n",
    ));
    let out = agent.run(&["check"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("filter column `region` is not a column of source table public.people"),
        "{text}"
    );
    // A text mask on a column the exchange holds as a number is refused too.
    tgt.exec("ALTER TABLE people ALTER COLUMN phone TYPE bigint USING NULL")
        .await;
    agent.rewrite(&one_table(
        &src,
        &tgt,
        "mask = { phone = { keep = [3, 0] } }\n",
    ));
    let out = agent.run(&["check"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("gives text, and exchange column phone"),
        "{text}"
    );
    agent.rewrite(&one_table(
        &src,
        &tgt,
        "mask = { phone = { replace = \"n/a\" } }\n",
    ));
    let out = agent.run(&["check"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("mask of `phone`: the replacement does not fit exchange column phone"),
        "{text}"
    );
    agent.rewrite(&one_table(
        &src,
        &tgt,
        "mask = { phone = { replace = 0 } }\n",
    ));
    agent.ok(&["check"]);
}
