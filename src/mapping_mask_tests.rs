//! Masks in the outbound mapping: masked columns leave masked, and so do the messages
//! about them.

use super::*;
use crate::ident::Ident;
use crate::shape::{HashAlgo, Mask};

fn col(name: &str, ty: ColType, native: &str) -> Col {
    Col {
        name: Ident::new(name).expect("ident"),
        ty,
        native: native.into(),
    }
}

#[test]
fn masked_columns_leave_masked_and_the_rest_as_read() {
    let cols = vec![
        col("id", ColType::Int, "bigint"),
        col("id_number", ColType::Text, "varchar(18)"),
        col("name", ColType::Text, "varchar(5)"),
        col("phone", ColType::Text, "text"),
    ];
    let sources = (0..4).map(Source::Column).collect();
    let mut m = Mapping::new(cols, sources, vec![0], None, true);
    assert!(m.is_identity());
    m.mask(&[
        None,
        Some(Mask::Keep { first: 3, last: 4 }),
        Some(Mask::Keep { first: 1, last: 0 }),
        Some(Mask::Hash {
            algo: HashAlgo::Sha256,
            salt: None,
        }),
    ]);
    assert!(!m.is_identity(), "a masked row is never passed on as read");
    let tz: Tz = "UTC".parse().expect("tz");
    let ctx = RowCtx {
        tz: &tz,
        exchange_time: Utc::now(),
        cd_batch: "2026120700001",
        origin: None,
        lower_ops: false,
        mark: "increment",
    };
    let mut src = vec![
        Value::Int(7),
        Value::Text("110101199003071234".into()),
        Value::Text("欧阳娜娜".into()),
        Value::Null,
    ];
    let out = m.row(&mut src, Op::Insert, &ctx).expect("maps");
    assert_eq!(
        out,
        vec![
            Value::Int(7),
            Value::Text("110***********1234".into()),
            Value::Text("欧***".into()),
            Value::Null,
        ]
    );
    // The source row keeps what it had: rejects and flags read it (masking them anew).
    assert_eq!(src[1], Value::Text("110101199003071234".into()));
}

#[test]
fn a_masked_value_too_long_is_refused_showing_it_masked() {
    let cols = vec![
        col("k", ColType::Int, "bigint"),
        col("n", ColType::Text, "varchar(4)"),
    ];
    let mut m = Mapping::new(
        cols,
        vec![Source::Column(0), Source::Column(1)],
        vec![0],
        None,
        true,
    );
    m.mask(&[None, Some(Mask::Keep { first: 1, last: 1 })]);
    let tz: Tz = "UTC".parse().expect("tz");
    let ctx = RowCtx {
        tz: &tz,
        exchange_time: Utc::now(),
        cd_batch: "x",
        origin: None,
        lower_ops: false,
        mark: "increment",
    };
    let mut src = vec![Value::Int(1), Value::Text("secret-name".into())];
    let e = m.row(&mut src, Op::Insert, &ctx).expect_err("too long");
    assert!(
        e.contains("s*********e") && !e.contains("secret-name"),
        "{e}"
    );
}
