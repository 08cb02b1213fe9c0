use super::*;

fn num(s: &str) -> Option<(i16, i16, u16, i16, Vec<i16>)> {
    let mut buf = Vec::new();
    if !numeric(&mut buf, s) {
        return None;
    }
    let be = |i: usize| i16::from_be_bytes([buf[i], buf[i + 1]]);
    let n = be(4);
    let digits = (0..n as usize).map(|i| be(12 + 2 * i)).collect();
    Some((n, be(6), be(8) as u16, be(10), digits))
}

#[test]
fn numerics_become_base_10000_digits() {
    assert_eq!(num("123.45"), Some((2, 0, 0, 2, vec![123, 4500])));
    assert_eq!(num("-0.0012"), Some((1, -1, 0x4000, 4, vec![12])));
    assert_eq!(num("10000"), Some((1, 1, 0, 0, vec![1])));
    assert_eq!(num("0.00"), Some((0, 0, 0, 2, vec![])));
    assert_eq!(
        num("99999999.99"),
        Some((3, 1, 0, 2, vec![9999, 9999, 9900]))
    );
    assert_eq!(num("000042"), Some((1, 0, 0, 0, vec![42])));
    assert_eq!(num(".5"), Some((1, -1, 0, 1, vec![5000])));
    assert_eq!(num("NaN"), None);
    assert_eq!(num("1e5"), None);
    assert_eq!(num(""), None);
    assert_eq!(num("-"), None);
}

#[test]
fn times_count_from_2000() {
    let t = NaiveDate::from_ymd_opt(2000, 1, 2)
        .and_then(|d| d.and_hms_micro_opt(0, 0, 1, 5))
        .unwrap_or_default();
    assert_eq!(micros(t), Some(86_400_000_000 + 1_000_005));
    let before = NaiveDate::from_ymd_opt(1999, 12, 31)
        .and_then(|d| d.and_hms_micro_opt(23, 59, 59, 999_999))
        .unwrap_or_default();
    assert_eq!(micros(before), Some(-1));
}

#[test]
fn values_of_another_kind_leave_the_buffer_alone() {
    let kinds = [Kind::I4, Kind::Text];
    let mut buf = vec![7];
    assert!(!row(
        &mut buf,
        &kinds,
        &[Value::Int(1 << 40), Value::Text("x".into())]
    ));
    assert!(!row(&mut buf, &kinds, &[Value::Int(1), Value::Int(2)]));
    assert_eq!(buf, vec![7]);
    assert!(row(&mut buf, &kinds, &[Value::Int(1), Value::Null]));
    assert_eq!(
        buf,
        vec![7, 0, 2, 0, 0, 0, 4, 0, 0, 0, 1, 255, 255, 255, 255]
    );
}

#[test]
fn values_read_back_as_they_were_written() {
    let t = |y, mo, d, h, mi, s, us| {
        NaiveDate::from_ymd_opt(y, mo, d)
            .and_then(|d| d.and_hms_micro_opt(h, mi, s, us))
            .expect("t")
    };
    let cases = [
        (Kind::Bool, ColType::Bool, Value::Bool(true)),
        (Kind::I2, ColType::Int, Value::Int(-32768)),
        (Kind::I4, ColType::Int, Value::Int(2_000_000_000)),
        (Kind::I8, ColType::Int, Value::Int(i64::MIN + 1)),
        (Kind::F4, ColType::Float, Value::Float(1.5)),
        (Kind::F8, ColType::Float, Value::Float(-0.1)),
        (Kind::Text, ColType::Text, Value::Text("哈尔滨 | 7".into())),
        (Kind::Bytes, ColType::Bytes, Value::Bytes(vec![0, 255, 7])),
        (
            Kind::Date,
            ColType::Date,
            Value::Date(t(1999, 12, 31, 0, 0, 0, 0).date()),
        ),
        (
            Kind::Date,
            ColType::Date,
            Value::Date(t(2026, 11, 23, 0, 0, 0, 0).date()),
        ),
        (
            Kind::Time,
            ColType::Time,
            Value::Time(t(2000, 1, 1, 23, 59, 59, 999_999).time()),
        ),
        (
            Kind::Timestamp,
            ColType::Timestamp,
            Value::Timestamp(t(1969, 7, 20, 20, 17, 40, 1)),
        ),
        (
            Kind::Timestamp,
            ColType::Timestamp,
            Value::Timestamp(t(2026, 11, 23, 8, 30, 0, 123_456)),
        ),
        (
            Kind::TimestampTz,
            ColType::TimestampTz,
            Value::TimestampTz(t(1900, 2, 28, 23, 0, 0, 999_999).and_utc()),
        ),
    ];
    for (kind, ty, v) in cases {
        let mut buf = Vec::new();
        assert!(field(&mut buf, kind, &v), "{v:?}");
        assert_eq!(read(ty, &buf[4..]).as_ref(), Some(&v), "{kind:?}");
    }
    // NUMERIC, as PostgreSQL writes it in text.
    for text in [
        "-12.50",
        "0.0012",
        "0.00",
        "10000",
        "99999999.99",
        "0.5000",
        "123456789012345678.123456789",
        "-0.000000001",
        "7",
    ] {
        let mut buf = Vec::new();
        assert!(numeric(&mut buf, text), "{text}");
        assert_eq!(
            read(ColType::Decimal, &buf[4..]),
            Some(Value::Decimal(text.into())),
            "{text}"
        );
    }
    // NaN in binary: no digits, weight 0, sign 0xC000, scale 0.
    assert_eq!(
        read(ColType::Decimal, &[0, 0, 0, 0, 0xC0, 0, 0, 0]),
        Some(Value::Decimal("NaN".into()))
    );
    assert_eq!(read(ColType::Decimal, &[0, 1, 0, 0, 0, 0, 0, 0]), None);
    // What the kind's types never send is left to sqlx (which says why it cannot be read).
    assert_eq!(read(ColType::Int, &[0; 3]), None);
    assert_eq!(read(ColType::Text, &[0xff]), None);
    assert_eq!(read(ColType::Timestamp, &i64::MAX.to_be_bytes()), None);
}

#[test]
fn the_size_hint_covers_the_encoded_rows() {
    let t = NaiveDate::from_ymd_opt(2026, 11, 23)
        .and_then(|d| d.and_hms_micro_opt(8, 30, 0, 1))
        .expect("t");
    let kinds = [
        Kind::I8,
        Kind::Text,
        Kind::Numeric,
        Kind::Numeric,
        Kind::Numeric,
        Kind::Timestamp,
        Kind::Bool,
        Kind::Date,
        Kind::F4,
        Kind::Bytes,
    ];
    let rows = vec![
        vec![
            Value::Int(i64::MAX),
            Value::Text("黑龙江省哈尔滨市".into()),
            Value::Decimal("-12345678901234.5678".into()),
            Value::Decimal("0.0001".into()),
            Value::Decimal("7".into()),
            Value::Timestamp(t),
            Value::Bool(true),
            Value::Date(t.date()),
            Value::Float(1.5),
            Value::Bytes(vec![0; 3]),
        ],
        vec![Value::Null; 10],
    ];
    let mut buf = HEADER.to_vec();
    for r in &rows {
        assert!(row(&mut buf, &kinds, r));
    }
    buf.extend_from_slice(TRAILER);
    assert!(
        size_hint(&rows) >= buf.len(),
        "{} < {}",
        size_hint(&rows),
        buf.len()
    );
    assert!(size_hint(&rows) < buf.len() * 2);
}

#[test]
fn only_known_base_types_are_binary() {
    let col = |ty, native: &str| Col {
        name: crate::ident::Ident::fixed("c"),
        ty,
        native: native.into(),
    };
    let ok = [
        col(ColType::Int, "bigint"),
        col(ColType::Decimal, "numeric(14,2)"),
        col(ColType::Text, "character varying(32)"),
        col(ColType::Timestamp, "timestamp(6) without time zone"),
        col(ColType::TimestampTz, "timestamp with time zone"),
    ];
    assert_eq!(
        kinds(&ok),
        Some(vec![
            Kind::I8,
            Kind::Numeric,
            Kind::Text,
            Kind::Timestamp,
            Kind::TimestampTz
        ])
    );
    assert_eq!(kinds(&[col(ColType::Text, "citext")]), None);
    assert_eq!(kinds(&[col(ColType::Other, "jsonb")]), None);
}

fn copy_col(name: &str, ty: ColType) -> Col {
    Col {
        name: crate::ident::Ident::new(name).expect("ident"),
        ty,
        native: String::new(),
    }
}

/// Binary COPY data of `rows` as PostgreSQL sends it: header, rows, trailer.
fn copy_data(kinds: &[Kind], rows: &[Vec<Value>]) -> Vec<u8> {
    let mut buf = HEADER.to_vec();
    for r in rows {
        assert!(row(&mut buf, kinds, r));
    }
    buf.extend_from_slice(TRAILER);
    buf
}

/// An integer, a Chinese-named text, a decimal and a timestamp column, with their kinds.
fn four_columns() -> ([Col; 4], [Kind; 4]) {
    let cols = [
        copy_col("id", ColType::Int),
        copy_col("名称", ColType::Text),
        copy_col("amount", ColType::Decimal),
        copy_col("at", ColType::Timestamp),
    ];
    (cols, [Kind::I8, Kind::Text, Kind::Numeric, Kind::Timestamp])
}

#[test]
fn copy_out_rows_are_read_however_the_data_is_split() {
    let (cols, kinds) = four_columns();
    let at = NaiveDate::from_ymd_opt(1998, 7, 1)
        .and_then(|d| d.and_hms_micro_opt(8, 0, 0, 1))
        .expect("at");
    let rows: Vec<Vec<Value>> = (0..5)
        .map(|i| {
            vec![
                Value::Int(i),
                if i == 2 {
                    Value::Null
                } else {
                    Value::Text(format!("哈尔滨 {i}"))
                },
                Value::Decimal(format!("-{i}.05")),
                Value::Timestamp(at),
            ]
        })
        .collect();
    let data = copy_data(&kinds, &rows);
    for size in [data.len(), 1, 2, 3, 7, 19, 20, 64] {
        let mut reader = CopyOut::default();
        let mut out = Vec::new();
        for chunk in data.chunks(size) {
            reader
                .feed(&Bytes::copy_from_slice(chunk), &cols, &mut out)
                .expect("feed");
        }
        assert!(reader.ended && !reader.partial(), "chunks of {size}");
        let values: Vec<Vec<Value>> = out.iter().map(|r| r.values.clone()).collect();
        assert_eq!(values, rows, "chunks of {size}");
        assert!(out.iter().all(|r| r.bad.is_none()));
    }
    // Cut short: not ended, and the half row is held.
    let mut reader = CopyOut::default();
    let mut out = Vec::new();
    reader
        .feed(
            &Bytes::copy_from_slice(&data[..data.len() - 10]),
            &cols,
            &mut out,
        )
        .expect("feed");
    assert!(!reader.ended && reader.partial());
    assert_eq!(out.len(), 4);
}

#[test]
fn rows_kept_as_tuples_decode_only_what_is_asked_and_complete_to_the_whole_row() {
    let (cols, kinds) = four_columns();
    let at = NaiveDate::from_ymd_opt(2026, 11, 2)
        .and_then(|d| d.and_hms_micro_opt(8, 0, 0, 7))
        .expect("at");
    let rows: Vec<Vec<Value>> = (0..4)
        .map(|i| {
            vec![
                Value::Int(i),
                Value::Text(format!("哈尔滨 {i}")),
                if i == 1 {
                    Value::Null
                } else {
                    Value::Decimal(format!("{i}.50"))
                },
                Value::Timestamp(at),
            ]
        })
        .collect();
    let data = copy_data(&kinds, &rows);
    for size in [data.len(), 1, 5, 33] {
        let mut reader = CopyOut::keeping(&[true, false, false, true]);
        let mut out = Vec::new();
        let mut fed = Vec::new();
        for chunk in data.chunks(size) {
            let chunk = Bytes::copy_from_slice(chunk);
            reader.feed(&chunk, &cols, &mut out).expect("feed");
            fed.push(chunk);
        }
        assert_eq!(out.len(), 4);
        if size == data.len() {
            // Tuples of one message share its bytes.
            let within = fed[0].as_ptr_range();
            assert!(out.iter().all(|r| {
                r.tuple
                    .as_ref()
                    .is_some_and(|t| within.contains(&t.as_ptr()))
            }));
        }
        for (r, want) in out.iter_mut().zip(&rows) {
            // Key and time decoded; the others NULL until completed from the tuple.
            assert_eq!(
                r.values,
                vec![want[0].clone(), Value::Null, Value::Null, want[3].clone()]
            );
            let tuple = r.tuple.clone().expect("tuple");
            // The tuple is the row as it was sent: written again, it is the same data.
            let mut again = Vec::new();
            assert!(row(&mut again, &kinds, want));
            assert_eq!(tuple, again);
            complete(&mut r.values, &tuple, &cols);
            assert_eq!(&r.values, want);
        }
    }
}

#[test]
fn copy_out_names_the_column_it_cannot_read_and_refuses_a_wrong_shape() {
    let cols = [copy_col("id", ColType::Int), copy_col("v", ColType::Text)];
    // A text column whose bytes are not UTF-8: the row comes with its reason.
    let mut data = HEADER.to_vec();
    data.extend_from_slice(&2i16.to_be_bytes());
    data.extend_from_slice(&8i32.to_be_bytes());
    data.extend_from_slice(&7i64.to_be_bytes());
    data.extend_from_slice(&2i32.to_be_bytes());
    data.extend_from_slice(&[0xff, 0xfe]);
    data.extend_from_slice(TRAILER);
    let mut out = Vec::new();
    CopyOut::default()
        .feed(&Bytes::copy_from_slice(&data), &cols, &mut out)
        .expect("feed");
    assert_eq!(out[0].values, vec![Value::Int(7), Value::Null]);
    assert_eq!(
        out[0].bad.as_deref(),
        Some("column v: cannot read the value")
    );
    // Three fields where two columns were selected.
    let mut data = HEADER.to_vec();
    data.extend_from_slice(&3i16.to_be_bytes());
    let e = CopyOut::default()
        .feed(&Bytes::copy_from_slice(&data), &cols, &mut Vec::new())
        .expect_err("shape");
    assert!(e.contains("3 fields") && e.contains("2 columns"), "{e}");
    let e = CopyOut::default()
        .feed(
            &Bytes::from_static(b"id,v\n1,2\n3,4\n5,6\n7,8\n"),
            &cols,
            &mut Vec::new(),
        )
        .expect_err("text");
    assert!(e.contains("signature"), "{e}");
}
