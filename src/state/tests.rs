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
    // Past 99,999 a day: still 13 characters, sorting after the ones before; then refused.
    sqlx::query("UPDATE counters SET n = 99998 WHERE day = '20260101'")
        .execute(&st.pool)
        .await
        .expect("set");
    let mut numbers = Vec::new();
    for _ in 0..3 {
        numbers.push(st.next_cd_batch("20260101").await.expect("n"));
    }
    assert_eq!(numbers, ["2026010199999", "20260101A0000", "20260101A0001"]);
    sqlx::query("UPDATE counters SET n = ? WHERE day = '20260101'")
        .bind(counter::MAX)
        .execute(&st.pool)
        .await
        .expect("set");
    let e = st.next_cd_batch("20260101").await.expect_err("exhausted");
    assert!(e.to_string().contains("43770015 batches"), "{e}");
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
        content: "c1".into(),
        sent_at: Utc::now(),
    };
    st.batch_started(&entry, Utc::now()).await.expect("start");
    let rejects = [Reject {
        rkey: "7".into(),
        kvals: "[]".into(),
        origin: Origin::Map,
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
    let open = st
        .rejects(Some("t"), Some(RejectState::Open))
        .await
        .expect("rejects");
    assert_eq!(open[0].reasons, vec!["列 name 太长".to_string()]);
    st.commit(&Commit {
        table: "t",
        delivered: &["7".to_string()],
        resubmit_why: "re-sent after it changed at the source",
        accepted: false,
        ..Commit::default()
    })
    .await
    .expect("commit");
    assert_eq!(st.tables().await.expect("tables")[0].open_rejects, 0);
    let (r, history) = st.reject(open[0].id).await.expect("reject").expect("found");
    assert_eq!(r.state, RejectState::Resubmitted);
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
        origin: Origin::Province,
        reasons: vec!["[E01] 统一社会信用代码错误".into()],
        ..rejects[0].clone()
    };
    st.province_reject("t", &again, None, None)
        .await
        .expect("reject again");
    let (r, history) = st.reject(open[0].id).await.expect("reject").expect("found");
    assert_eq!(r.state, RejectState::Open);
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

/// Digests come back exactly as committed, packed or not: many (several packed rows), keys
/// with separators, commas and multi-byte text, with and without their key values, and only
/// those at or after a change time when one is given.
#[tokio::test]
async fn digests_read_back_as_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let st = State::open(dir.path()).await.expect("open");
    let n = DIGESTS_PER_ROW * 3 + 7;
    let entries: Vec<DigestEntry> = (0..n)
        .map(|i| {
            let rkey = match i % 4 {
                0 => format!("{i}"),
                1 => format!("区划{i}|A\\,b"),
                2 => format!("k,{i},"),
                _ => format!("{i}|{}", "長".repeat(i % 9)),
            };
            // Pairs of rows with the same change time and digest: pages split between them.
            let mut digest = [0u8; 16];
            digest[..8].copy_from_slice(&((i / 2) as u64).to_be_bytes());
            DigestEntry {
                rkey,
                digest,
                ts: Some(format!("2026-12-03 10:{:02}:00", (i / 2) % 60)),
                kvals: format!("[{i},\"名,{i}\"]"),
            }
        })
        .collect();
    st.commit(&Commit {
        table: "t",
        digests: &entries,
        ..Commit::default()
    })
    .await
    .expect("commit");
    // Another table's digests are not read.
    st.commit(&Commit {
        table: "u",
        digests: &entries[..3],
        ..Commit::default()
    })
    .await
    .expect("commit u");
    let all = st.digests("t", None, true).await.expect("all");
    assert_eq!(all.len(), n);
    for e in &entries {
        assert_eq!(
            all.get(&e.rkey),
            Some(&(e.digest, e.kvals.clone())),
            "{}",
            e.rkey
        );
    }
    let since = "2026-12-03 10:30:00";
    let recent = st.digests("t", Some(since), false).await.expect("since");
    let want: Vec<&DigestEntry> = entries
        .iter()
        .filter(|e| e.ts.as_deref().is_some_and(|t| t >= since))
        .collect();
    assert!(want.len() > DIGESTS_PER_ROW && want.len() < n);
    assert_eq!(recent.len(), want.len());
    for e in want {
        assert_eq!(recent.get(&e.rkey), Some(&(e.digest, String::new())));
    }
    assert!(
        st.digests("none", None, true)
            .await
            .expect("none")
            .is_empty()
    );
    // Exactly full pages: the last one is followed by an empty one.
    st.commit(&Commit {
        table: "v",
        digests: &entries[..DIGESTS_PER_ROW * 2],
        ..Commit::default()
    })
    .await
    .expect("commit v");
    for since in [None, Some("2026")] {
        let got = st.digests("v", since, false).await.expect("v");
        assert_eq!(got.len(), DIGESTS_PER_ROW * 2, "{since:?}");
        assert!(
            entries[..DIGESTS_PER_ROW * 2]
                .iter()
                .all(|e| got.get(&e.rkey) == Some(&(e.digest, String::new())))
        );
    }
}

/// A re-read's record reads back as written (and replaces the one before); digests are
/// looked up by key (more keys than one statement takes), and the latest change time among
/// them is told.
#[tokio::test]
async fn rereads_and_digests_by_key() {
    use crate::watermark::Reread;
    let dir = tempfile::tempdir().expect("tempdir");
    let st = State::open(dir.path()).await.expect("open");
    assert_eq!(st.reread("t").await.expect("none yet"), None);
    assert_eq!(st.newest_digest("t").await.expect("none yet"), None);
    let first = Reread {
        column: "updated_at".into(),
        from: None,
        xmin: 7,
    };
    st.set_reread("t", &first, true).await.expect("record");
    let second = Reread {
        column: "updated_at".into(),
        from: Some(Value::Text("2026-12-06 10:00:00".into())),
        xmin: (5 << 32) + 9,
    };
    st.set_reread("t", &second, false)
        .await
        .expect("record again");
    assert_eq!(st.reread("t").await.expect("read"), Some(second.clone()));
    // A quiet re-read waits in memory for the next flush: the store still has the first.
    let other = State::open(dir.path()).await.expect("open again");
    assert_eq!(other.reread("t").await.expect("read"), Some(first));
    st.flush().await.expect("flush");
    assert_eq!(other.reread("t").await.expect("read"), Some(second.clone()));
    other.close().await;
    assert_eq!(st.reread("u").await.expect("other table"), None);
    let entries: Vec<DigestEntry> = (0..1200)
        .map(|i| DigestEntry {
            rkey: format!("k{i}"),
            digest: [(i % 250) as u8; 16],
            ts: Some(format!("2026-12-06 10:{:02}:00", i % 60)),
            kvals: format!("[{i}]"),
        })
        .collect();
    st.commit(&Commit {
        table: "t",
        digests: &entries,
        ..Commit::default()
    })
    .await
    .expect("commit");
    assert_eq!(
        st.newest_digest("t").await.expect("newest").as_deref(),
        Some("2026-12-06 10:59:00")
    );
    let keys: Vec<String> = (0..1300).step_by(2).map(|i| format!("k{i}")).collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let found = st.digests_of("t", &keys).await.expect("by key");
    assert_eq!(found.len(), 600);
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(
            found.get(&e.rkey).map(|d| d.0),
            (i % 2 == 0).then_some(e.digest)
        );
    }
    assert!(st.digests_of("u", &keys).await.expect("u").is_empty());
}

#[tokio::test]
async fn a_batch_begun_and_never_acknowledged_is_sent_again_as_it_was_until_a_later_one_is() {
    let dir = tempfile::tempdir().expect("tempdir");
    let st = State::open(dir.path()).await.expect("open");
    let at = parse_ts("2026-12-07T08:00:00.000001Z").expect("time");
    let entry = |id: &str, content: &str| LedgerEntry {
        id: id.into(),
        table: "t".into(),
        cd_batch: format!("20261207{id}"),
        wm_from: None,
        wm_to: None,
        rows: 1,
        deletes: 0,
        rejected: 0,
        content: content.into(),
        sent_at: at,
    };
    let ack = |id: &'static str| Commit {
        table: "t",
        batch_id: Some(id),
        rows: 1,
        ..Commit::default()
    };
    st.batch_started(&entry("00001", "A"), Utc::now())
        .await
        .expect("start");
    st.commit(&ack("00001")).await.expect("ack");
    // Acknowledged: the same rows again are a new batch.
    assert_eq!(st.unacknowledged("t", "A").await.expect("lookup"), None);
    st.batch_started(&entry("00002", "B"), Utc::now())
        .await
        .expect("start");
    st.batch_failed("00002", "no answer").await.expect("failed");
    let sent = st.unacknowledged("t", "B").await.expect("lookup");
    assert_eq!(
        sent,
        Some(Sent {
            id: "00002".into(),
            cd_batch: "2026120700002".into(),
            at,
        })
    );
    assert_eq!(st.unacknowledged("other", "B").await.expect("lookup"), None);
    // A batch begun after it, not acknowledged, does not supersede it; one acknowledged does.
    st.batch_started(&entry("00003", "C"), Utc::now())
        .await
        .expect("start");
    assert!(st.unacknowledged("t", "B").await.expect("lookup").is_some());
    st.commit(&ack("00003")).await.expect("ack");
    assert_eq!(st.unacknowledged("t", "B").await.expect("lookup"), None);
}
