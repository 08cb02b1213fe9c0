use super::*;
use crate::value::Value;

#[tokio::test]
async fn commits_are_atomic_and_counters_daily() {
    let dir = tempfile::tempdir().expect("tempdir");
    let st = State::open(dir.path()).await.expect("open");
    assert_eq!(
        st.next_cd_batch("20260101").await.expect("n"),
        "2026010100001"
    );
    assert_eq!(
        st.next_cd_batch("20260101").await.expect("n"),
        "2026010100002"
    );
    assert_eq!(
        st.next_cd_batch("20260102").await.expect("n"),
        "2026010200001"
    );
    let wm = Watermark {
        ts: None,
        key: vec![Value::Int(42)],
    };
    let entry = LedgerEntry {
        id: "a-t-1".into(),
        table: "t".into(),
        cd_batch: "2026010100003".into(),
        wm_from: None,
        wm_to: Some(wm.to_json()),
        rows: 2,
        deletes: 0,
        rejected: 1,
    };
    st.batch_started(&entry, Utc::now()).await.expect("start");
    let rejects = [Reject {
        rkey: "7".into(),
        kvals: "[]".into(),
        origin: "map",
        reasons: vec!["列 name 太长".into()],
        row_json: "{}".into(),
        digest: None,
    }];
    st.commit(&Commit {
        table: "t",
        batch_id: Some("a-t-1"),
        watermark: Some(&wm),
        rows: 2,
        rejects: &rejects,
        ..Commit::default()
    })
    .await
    .expect("commit");
    assert_eq!(st.watermark("t").await.expect("wm"), Some(wm));
    let tables = st.tables().await.expect("tables");
    assert_eq!(tables[0].rows_total, 2);
    assert_eq!(tables[0].open_rejects, 1);
    let open = st.rejects(Some("t"), Some("open")).await.expect("rejects");
    assert_eq!(open[0].reasons, vec!["列 name 太长".to_string()]);
    st.commit(&Commit {
        table: "t",
        delivered: &["7".to_string()],
        resubmit_why: "re-sent after it changed at the source",
        ..Commit::default()
    })
    .await
    .expect("commit");
    assert_eq!(st.tables().await.expect("tables")[0].open_rejects, 0);
    let (r, history) = st.reject(open[0].id).await.expect("reject").expect("found");
    assert_eq!(r.state, "resubmitted");
    let events: Vec<&str> = history.iter().map(|h| h.event.as_str()).collect();
    assert_eq!(
        events,
        [
            "quarantined: a value does not fit the exchange table",
            "re-sent after it changed at the source"
        ]
    );
    // Cleared after the confirmation window, rejected again when the province says so.
    assert_eq!(
        st.clear_confirmed(Utc::now() + chrono::Duration::seconds(1), "1s")
            .await
            .expect("clear"),
        1
    );
    let again = Reject {
        origin: "province",
        reasons: vec!["[E01] 统一社会信用代码错误".into()],
        ..rejects[0].clone()
    };
    st.province_reject("t", &again, None, None)
        .await
        .expect("reject again");
    let (r, history) = st.reject(open[0].id).await.expect("reject").expect("found");
    assert_eq!(r.state, "open");
    assert_eq!(history.len(), 4, "{history:?}");
    assert_eq!(history[3].event, "rejected by the province again");
    // The same rejection read once more changes nothing.
    st.province_reject("t", &again, None, None)
        .await
        .expect("same again");
    assert_eq!(
        st.reject(open[0].id).await.expect("r").expect("f").1.len(),
        4
    );
}
