use super::*;
use crate::value::ColType;

/// Each catalog statement binds the names it looks up, its placeholders `place(1)` to
/// `place(n)` and no more, and has nothing formatted into its text.
pub(super) fn assert_binds_only(statements: &[(&str, usize)], place: impl Fn(usize) -> String) {
    for &(text, params) in statements {
        for n in 1..=params {
            assert!(text.contains(&place(n)), "{text}");
        }
        assert!(!text.contains(&place(params + 1)), "{text}");
        assert!(!text.contains('{'), "{text}");
    }
}

#[test]
fn catalog_rows_group_into_the_primary_key_and_unique_keys() {
    let id = |s: &str| Ident::new(s).expect("ident");
    let keys = [
        ("pk", id("a"), true),
        ("pk", id("b"), true),
        ("uq", id("c"), false),
        ("uq2", id("a"), false),
    ];
    let t = TableSchema::from_catalog("public", "t", Vec::new(), keys).expect("table");
    assert_eq!(t.name.to_string(), "public.t");
    assert_eq!(t.primary_key, [id("a"), id("b")]);
    assert_eq!(
        t.unique_keys,
        [vec![id("a"), id("b")], vec![id("c")], vec![id("a")]]
    );
    let none: [(&str, Ident, bool); 0] = [];
    assert!(TableSchema::from_catalog("bad\0schema", "t", Vec::new(), none).is_none());
}

#[test]
fn a_cell_that_cannot_be_read_is_null_and_the_first_is_named() {
    let cols = [
        Col {
            name: id_of("a"),
            ty: ColType::Int,
            native: "int".into(),
        },
        Col {
            name: id_of("b"),
            ty: ColType::Int,
            native: "int".into(),
        },
        Col {
            name: id_of("c"),
            ty: ColType::Int,
            native: "int".into(),
        },
    ];
    let r = read_row(&cols, |i, _| {
        if i == 0 {
            Ok(Value::Int(1))
        } else {
            Err(format!("bad {i}"))
        }
    });
    assert_eq!(r.values, [Value::Int(1), Value::Null, Value::Null]);
    assert_eq!(
        r.bad.as_deref(),
        Some("column b: cannot read the value: bad 1")
    );
}

fn id_of(s: &str) -> Ident {
    Ident::new(s).expect("ident")
}

#[test]
fn tuples_are_kept_one_after_another_and_taken_by_row() {
    let mut t = Tuples::with_capacity(3, 16);
    assert!(t.is_empty());
    for b in [&b"ab"[..], b"", b"cde"] {
        t.push(b);
    }
    assert_eq!(t.len(), 3);
    assert_eq!(t.get(0), Some(&b"ab"[..]));
    assert_eq!(t.get(1), Some(&b""[..]));
    assert_eq!(t.get(2), Some(&b"cde"[..]));
    assert_eq!(t.get(3), None);
    assert_eq!(t.span(0..3), Some(&b"abcde"[..]));
    assert_eq!(t.span(1..3), Some(&b"cde"[..]));
    assert_eq!(t.span(2..2), Some(&b""[..]));
    assert_eq!(t.span(2..4), None);
}

#[test]
fn only_the_very_same_known_types_pass_as_they_are() {
    let col = |name: &str, ty, native: &str| Col {
        name: Ident::new(name).expect("ident"),
        ty,
        native: native.into(),
    };
    let a = [
        col("id", ColType::Int, "bigint"),
        col("v", ColType::Text, "character varying(20)"),
    ];
    assert!(same_binary_form(&a, &a.clone()));
    // Another length, another integer width, another column count, an unknown type.
    let mut b = a.clone();
    b[1].native = "character varying(30)".into();
    assert!(!same_binary_form(&a, &b));
    let mut b = a.clone();
    b[0].native = "integer".into();
    assert!(!same_binary_form(&a, &b));
    assert!(!same_binary_form(&a, &a[..1]));
    let j = [col("doc", ColType::Other, "jsonb")];
    assert!(!same_binary_form(&j, &j.clone()));
}

#[test]
fn a_batch_buffer_given_back_is_taken_again() {
    // A size no other test asks for (a buffer is taken only by a batch that needs at least a
    // quarter of it), so that the buffer found is this test's own.
    let size = (3 << 20) + 4099;
    let mut t = Tuples::with_capacity(1, size);
    t.push(&[1, 2, 3]);
    let at = t.data.as_ptr();
    drop(t);
    let again = Tuples::with_capacity(2, size);
    assert_eq!(again.data.as_ptr(), at);
    assert!(again.is_empty() && again.data.is_empty());
    assert!(again.data.capacity() >= size);
    drop(again);
    // Nor is it taken for a few rows.
    assert_ne!(Tuples::with_capacity(1, 64).data.as_ptr(), at);
    // Too large to keep: given back to the allocator.
    drop(Tuples::with_capacity(1, KEPT_BYTES + 1));
    assert!(
        BUFFERS
            .lock()
            .expect("buffers")
            .iter()
            .all(|b| b.capacity() <= KEPT_BYTES)
    );
}

#[test]
fn row_vectors_given_back_are_kept_empty_and_within_their_bound() {
    // A capacity no other test asks for: these vectors are this test's own. (One other test
    // reads a few pass-through rows meanwhile and may take one or two of them.)
    let cap = 977;
    let mine: Vec<Vec<Value>> = (0..64)
        .map(|i| {
            let mut v = Vec::with_capacity(cap);
            v.extend([Value::Int(i), Value::Text("监督检查".into()), Value::Null]);
            v
        })
        .collect();
    let at: Vec<*const Value> = mine.iter().map(|v| v.as_ptr()).collect();
    give_back_rows(mine);
    {
        let kept = VALUE_ROWS.lock().expect("kept rows");
        let found = kept
            .rows
            .iter()
            .filter(|v| at.contains(&v.as_ptr()))
            .count();
        assert!(found >= 32, "only {found} of 64 vectors kept");
        assert!(kept.rows.iter().all(Vec::is_empty));
        let bytes: usize =
            kept.rows.iter().map(|v| v.capacity()).sum::<usize>() * std::mem::size_of::<Value>();
        assert_eq!(kept.bytes, bytes);
    }
    // Taken again, empty and large enough, whatever is kept.
    let v = row_values(17);
    assert!(v.is_empty() && v.capacity() >= 17);
    // More than the bound: the rest are freed.
    give_back_rows((0..20_000).map(|_| Vec::with_capacity(17)).collect());
    let kept = VALUE_ROWS.lock().expect("kept rows");
    assert!(kept.bytes <= KEPT_VALUE_BYTES, "{} bytes kept", kept.bytes);
    assert!(
        kept.bytes > KEPT_VALUE_BYTES / 2,
        "{} bytes kept",
        kept.bytes
    );
}
