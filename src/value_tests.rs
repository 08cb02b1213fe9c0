#[test]
fn values_that_pass_unconverted_are_what_coerce_gives_back() {
    use super::{ColType, Value};
    use chrono::{NaiveDate, TimeZone, Utc};
    let tz: chrono_tz::Tz = "Asia/Shanghai".parse().expect("tz");
    let ts = NaiveDate::from_ymd_opt(2026, 11, 23)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .expect("ts");
    let values = [
        Value::Null,
        Value::Bool(true),
        Value::Int(1),
        Value::Float(1.0),
        Value::Decimal("1".into()),
        Value::Text("1".into()),
        Value::Bytes(b"1".to_vec()),
        Value::Date(ts.date()),
        Value::Time(ts.time()),
        Value::Timestamp(ts),
        Value::TimestampTz(Utc.from_utc_datetime(&ts)),
    ];
    let types = [
        ColType::Bool,
        ColType::Int,
        ColType::Float,
        ColType::Decimal,
        ColType::Text,
        ColType::Bytes,
        ColType::Date,
        ColType::Time,
        ColType::Timestamp,
        ColType::TimestampTz,
        ColType::Other,
    ];
    let mut passing = 0;
    for v in &values {
        for &t in &types {
            if v.passes_as(t) {
                passing += 1;
                assert_eq!(v.clone().coerce(t, &tz).as_ref(), Ok(v), "{v:?} as {t:?}");
            }
        }
    }
    // NULL as every type, each other value as its own type (and text as `Other`).
    assert_eq!(passing, types.len() + values.len());
}

#[test]
fn fast_time_texts_equal_chronos() {
    use chrono::{Duration, NaiveDate, Timelike, Utc};
    let base = NaiveDate::from_ymd_opt(1, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .expect("date");
    let nanos = [
        0u32,
        1,
        999,
        1_000,
        5_000_000,
        123_456_000,
        123_456_789,
        999_999_999,
    ];
    let mut seed = 12345u64;
    for i in 0..20_000u64 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let days = (seed >> 33) % 3_652_000;
        let secs = (seed >> 13) % 86_400;
        let t = base + Duration::days(days as i64) + Duration::seconds(secs as i64);
        let t = t
            .with_nanosecond(nanos[(i % nanos.len() as u64) as usize])
            .expect("nanos");
        let tz = chrono::DateTime::<Utc>::from_naive_utc_and_offset(t, Utc);
        for v in [
            Value::Date(t.date()),
            Value::Time(t.time()),
            Value::Timestamp(t),
            Value::TimestampTz(tz),
        ] {
            let slow = match &v {
                Value::Date(d) => d.format("%Y-%m-%d").to_string(),
                Value::Time(t) => t.format("%H:%M:%S%.f").to_string(),
                Value::Timestamp(t) => t.format(TS_FMT).to_string(),
                Value::TimestampTz(t) => t.format("%Y-%m-%d %H:%M:%S%.6f+00:00").to_string(),
                _ => unreachable!(),
            };
            assert_eq!(v.to_text(), slow, "{v:?}");
        }
        assert_eq!(
            Value::TimestampTz(tz).sort_text(),
            tz.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
        );
    }
    let far = NaiveDate::from_ymd_opt(12345, 6, 7).expect("date");
    assert_eq!(
        Value::Date(far).to_text(),
        far.format("%Y-%m-%d").to_string()
    );
}
use super::*;

fn tz() -> Tz {
    "Asia/Shanghai".parse().expect("tz")
}

#[test]
fn decimals_keep_their_scale_and_reject_garbage() {
    assert_eq!(parse_decimal("123.4500").as_deref(), Ok("123.4500"));
    assert_eq!(parse_decimal(" +0.10 ").as_deref(), Ok("0.10"));
    assert_eq!(parse_decimal("-.5").as_deref(), Ok("-0.5"));
    assert!(parse_decimal("1e5").is_err());
    assert!(parse_decimal("12a").is_err());
    assert!(parse_decimal(".").is_err());
    assert!(parse_decimal("").is_err());
    assert!(parse_decimal("NaN").is_err());
}

#[test]
fn coercion_is_exact_or_refuses() {
    let t = tz();
    assert_eq!(
        Value::Int(1).coerce(ColType::Bool, &t),
        Ok(Value::Bool(true))
    );
    assert!(Value::Int(7).coerce(ColType::Bool, &t).is_err());
    assert_eq!(
        Value::Text("12.000".into()).coerce(ColType::Int, &t),
        Ok(Value::Int(12))
    );
    assert!(Value::Text("12.5".into()).coerce(ColType::Int, &t).is_err());
    assert_eq!(
        Value::Decimal("99999999999999999999.123456".into()).coerce(ColType::Text, &t),
        Ok(Value::Text("99999999999999999999.123456".into()))
    );
    assert!(
        Value::Text("abc".into())
            .coerce(ColType::Decimal, &t)
            .is_err()
    );
}

#[test]
fn naive_times_are_local_to_the_agent_zone() {
    let t = tz();
    let naive = NaiveDateTime::parse_from_str("2024-03-01 08:00:00.000001", TS_FMT).expect("ts");
    let utc = Value::Timestamp(naive)
        .coerce(ColType::TimestampTz, &t)
        .expect("coerce");
    assert_eq!(utc.to_text(), "2024-03-01 00:00:00.000001+00:00");
    assert_eq!(
        utc.coerce(ColType::Timestamp, &t),
        Ok(Value::Timestamp(naive))
    );
    let from_text = Value::Text("2024-03-01T00:00:00.000001Z".into())
        .coerce(ColType::Timestamp, &t)
        .expect("coerce");
    assert_eq!(from_text, Value::Timestamp(naive));
    let compact = Value::Text("20240301080000".into())
        .coerce(ColType::Timestamp, &t)
        .expect("coerce");
    assert_eq!(compact.to_text(), "2024-03-01 08:00:00.000000");
}

#[test]
fn key_text_escapes_separators() {
    let a = Value::Text("a|b".into());
    let b = Value::Int(7);
    assert_eq!(key_text(&[&a, &b]), "a\\|b|7");
    assert_eq!(key_text(&[&a]), "a\\|b");
    assert_eq!(key_text(&[&Value::Text("a\\b".into())]), "a\\\\b");
    assert_eq!(key_text(&[&b]), "7");
    assert_ne!(
        key_text(&[&Value::Text("a|b".into())]),
        key_text(&[&Value::Text("a".into()), &Value::Text("b".into())])
    );
}

#[test]
fn digests_distinguish_types_and_boundaries() {
    let d1 = row_digest(&[Value::Text("ab".into()), Value::Text("c".into())]);
    let d2 = row_digest(&[Value::Text("a".into()), Value::Text("bc".into())]);
    let d3 = row_digest(&[Value::Int(1)]);
    let d4 = row_digest(&[Value::Text("1".into())]);
    assert_ne!(d1, d2);
    assert_ne!(d3, d4);
}

#[test]
fn lookback_shifts_text_in_its_own_format() {
    let v = Value::Text("20240301080000".into());
    let back = v
        .minus(std::time::Duration::from_secs(90), "%Y%m%d%H%M%S")
        .expect("shift");
    assert_eq!(back, Value::Text("20240301075830".into()));
    assert!(
        Value::Int(3)
            .minus(std::time::Duration::from_secs(1), "%Y")
            .is_none()
    );
}

#[test]
fn values_survive_json() {
    let vals = vec![
        Value::Null,
        Value::Decimal("1.10".into()),
        Value::Bytes(vec![0, 255]),
        Value::Timestamp(
            NaiveDateTime::parse_from_str("2024-03-01 08:00:00.123456", TS_FMT).expect("ts"),
        ),
        Value::TimestampTz(
            Utc.timestamp_micros(1_700_000_000_123_456)
                .single()
                .expect("ts"),
        ),
    ];
    let s = serde_json::to_string(&vals).expect("json");
    let back: Vec<Value> = serde_json::from_str(&s).expect("json");
    assert_eq!(vals, back);
}
