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
fn batch_ids_are_deterministic() {
    let a = batch_id("230000-SCJGJ", "t", "{\"key\":[1]}", "{\"key\":[9]}", 9);
    let b = batch_id("230000-SCJGJ", "t", "{\"key\":[1]}", "{\"key\":[9]}", 9);
    let c = batch_id("230000-SCJGJ", "t", "{\"key\":[1]}", "{\"key\":[9]}", 8);
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert!(a.starts_with("230000-SCJGJ-t-"));
}
