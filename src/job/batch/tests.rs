use super::*;

#[test]
fn a_key_read_twice_keeps_its_last_version() {
    let up = |k: &str, v: i64| {
        (
            k.to_string(),
            Pending::Upsert(vec![Value::Int(v)], Op::Update, None),
        )
    };
    let mut pending = vec![up("1", 1), up("2", 2), up("1", 3), up("3", 4), up("2", 5)];
    last_of_each_key(&mut pending);
    let got: Vec<(String, i64)> = pending
        .iter()
        .map(|(k, p)| match p {
            Pending::Upsert(v, _, _) if let Some(Value::Int(i)) = v.first() => (k.clone(), *i),
            _ => (k.clone(), -1),
        })
        .collect();
    assert_eq!(got, vec![("1".into(), 3), ("3".into(), 4), ("2".into(), 5)]);
}

#[test]
fn a_batch_is_named_by_its_rows_and_its_number() {
    let up = |k: &str, v: &str| {
        (
            k.to_string(),
            Pending::Upsert(vec![Value::Text(v.into())], Op::Update, None),
        )
    };
    let rows = vec![up("1", "a"), up("2", "b")];
    let same = content_of("", &[up("1", "a"), up("2", "b")]);
    assert_eq!(content_of("", &rows), same);
    // Any value, operation, key, salt or tuple changes it.
    assert_ne!(content_of("", &[up("1", "a"), up("2", "c")]), same);
    assert_ne!(content_of("resync:1:", &rows), same);
    assert_ne!(content_of("", &[up("1", "a")]), same);
    let insert = (
        "1".to_string(),
        Pending::Upsert(vec![Value::Text("a".into())], Op::Insert, None),
    );
    assert_ne!(content_of("", &[insert, up("2", "b")]), same);
    let gone = (
        "1".to_string(),
        Pending::Gone(vec![Value::Text("a".into())]),
    );
    assert_ne!(content_of("", &[gone, up("2", "b")]), same);
    let tuple = |t: &'static [u8]| {
        (
            "1".to_string(),
            Pending::Upsert(vec![Value::Null], Op::Update, Some(Bytes::from_static(t))),
        )
    };
    assert_ne!(
        content_of("", &[tuple(b"x")]),
        content_of("", &[tuple(b"y")])
    );
    // Values are told apart from where one ends and the next begins.
    let two = |a: &str, b: &str| {
        (
            "1".to_string(),
            Pending::Upsert(
                vec![Value::Text(a.into()), Value::Text(b.into())],
                Op::Update,
                None,
            ),
        )
    };
    assert_ne!(
        content_of("", &[two("ab", "c")]),
        content_of("", &[two("a", "bc")])
    );

    let a = batch_id("230000-SCJGJ", "t", &same, "2026120700001");
    assert_eq!(a, batch_id("230000-SCJGJ", "t", &same, "2026120700001"));
    assert_ne!(a, batch_id("230000-SCJGJ", "t", &same, "2026120700002"));
    assert!(a.starts_with("230000-SCJGJ-t-"));
}
