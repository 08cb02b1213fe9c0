use super::*;

const NAME: &str = "保密测试张三丰";
const ID_NUMBER: &str = "340524198001010010";

fn files_hold(dir: &Path, needle: &str) -> bool {
    ["state.db", "state.db-wal"].iter().any(|f| {
        std::fs::read(dir.join(f))
            .is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes()))
    })
}

fn reject(key: &str) -> Reject {
    Reject {
        rkey: key.into(),
        kvals: format!("[{key}]"),
        origin: Origin::Rule,
        reasons: vec![format!("id_no: wrong check digit (value `{ID_NUMBER}`)")],
        row_json: serde_json::json!({"name": NAME, "id_no": ID_NUMBER}).to_string(),
        digest: None,
    }
}

async fn cleared_reject(st: &State) {
    let rejects = [reject("1")];
    st.commit(&Commit {
        table: "t",
        rejects: &rejects,
        ..Commit::default()
    })
    .await
    .expect("quarantine");
    st.mark_resubmitted("t", &["1".into()], "corrected")
        .await
        .expect("resubmit");
    let n = st
        .clear_confirmed(Utc::now() + chrono::Duration::seconds(1), "1s")
        .await
        .expect("clear");
    assert_eq!(n, 1);
}

fn plan(before: DateTime<Utc>, configured: &[&str]) -> PurgePlan {
    PurgePlan {
        ledger_before: before,
        cleared_before: before,
        configured: configured.iter().map(|s| s.to_string()).collect(),
    }
}

#[tokio::test]
async fn a_purged_reject_is_gone_from_the_files_bytes_wal_included() {
    let dir = tempfile::tempdir().expect("tempdir");
    let st = State::open(dir.path()).await.expect("open");
    cleared_reject(&st).await;
    let digests = [DigestEntry {
        rkey: "9".into(),
        digest: [7; 16],
        ts: None,
        kvals: "[\"gone-table-key\"]".into(),
    }];
    st.commit(&Commit {
        table: "gone",
        digests: &digests,
        ..Commit::default()
    })
    .await
    .expect("digests");
    assert!(files_hold(dir.path(), NAME) && files_hold(dir.path(), ID_NUMBER));
    assert!(files_hold(dir.path(), "gone-table-key"));

    let future = Utc::now() + chrono::Duration::days(1);
    let dry = st
        .purge(&plan(future, &["t"]), true)
        .await
        .expect("dry run");
    assert_eq!(dry.cleared_rejects, 1);
    assert_eq!(dry.unconfigured_digests, 1);
    assert!(dry.reject_history >= 3, "{dry:?}");
    assert_eq!(st.rejects(None, None).await.expect("list").len(), 1);
    assert!(files_hold(dir.path(), NAME), "a dry run removed something");

    // Not yet due: nothing goes.
    let past = Utc::now() - chrono::Duration::days(1);
    let none = st
        .purge(&plan(past, &["t", "gone"]), false)
        .await
        .expect("purge");
    assert_eq!(none, Purged::default());

    let done = st.purge(&plan(future, &["t"]), false).await.expect("purge");
    assert_eq!(done, dry);
    assert!(st.rejects(None, None).await.expect("list").is_empty());
    // The pool is still open, as in the daemon: the log exists and must be empty too.
    for needle in [NAME, ID_NUMBER, "gone-table-key"] {
        assert!(
            !files_hold(dir.path(), needle),
            "`{needle}` is still in the state files"
        );
    }
    let again = st.purge(&plan(future, &["t"]), false).await.expect("purge");
    assert_eq!(again.total(), 0);
    st.close().await;
}

#[tokio::test]
async fn an_older_store_without_incremental_vacuum_is_rewritten_by_a_purge() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let path = dir.path().join("state.db");
        let opts = SqliteConnectOptions::from_str("sqlite://")
            .expect("opts")
            .filename(&path)
            .create_if_missing(true);
        let mut c = opts.connect().await.expect("connect");
        sqlx::raw_sql("CREATE TABLE old (x)")
            .execute(&mut c)
            .await
            .expect("create");
        c.close().await.expect("close");
    }
    let st = State::open(dir.path()).await.expect("open");
    let mode = || sqlx::query_scalar::<_, i64>("PRAGMA auto_vacuum").fetch_one(&st.pool);
    assert_eq!(mode().await.expect("mode"), 0);
    cleared_reject(&st).await;
    st.purge(&plan(Utc::now() + chrono::Duration::days(1), &["t"]), false)
        .await
        .expect("purge");
    assert_eq!(mode().await.expect("mode"), 0);
    assert!(!files_hold(dir.path(), ID_NUMBER));
    assert!(!files_hold(dir.path(), NAME));
    st.close().await;
}
