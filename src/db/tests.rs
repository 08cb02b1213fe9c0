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
