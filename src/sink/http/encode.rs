//! The built-in envelope: a batch as one JSON body of records, each with its operation,
//! its key and its values under the exchange's column names.

use base64::Engine as _;
use chrono::{NaiveDateTime, TimeZone};
use chrono_tz::Tz;
use serde_json::{Map, Value as Json};

use crate::sink::{Op, Outgoing, Removal};
use crate::value::Value;

/// Where a record came from in the batch: a row or a delete, and its index there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Origin {
    pub delete: bool,
    pub index: usize,
}

/// One record of the envelope, with where it came from.
#[derive(Debug)]
pub struct Record {
    pub origin: Origin,
    pub json: Json,
}

/// A value as the envelope carries it: integers as numbers, decimals as strings with their
/// exact digits, dates `YYYY-MM-DD`, times RFC 3339 with the offset (a time stored without
/// a zone is in `tz`), binary as base64, NULL as null.
pub fn value(v: &Value, tz: Tz) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => Json::from(*i),
        // A float that JSON cannot hold (NaN, infinity) travels as its text.
        Value::Float(f) => serde_json::Number::from_f64(*f)
            .map_or_else(|| Json::String(f.to_string()), Json::Number),
        Value::Decimal(d) => Json::String(d.clone()),
        Value::Text(s) => Json::String(s.clone()),
        Value::Bytes(b) => Json::String(base64::engine::general_purpose::STANDARD.encode(b)),
        Value::Date(d) => Json::String(d.format("%Y-%m-%d").to_string()),
        Value::Time(t) => Json::String(t.format("%H:%M:%S%.f").to_string()),
        Value::Timestamp(t) => Json::String(local(*t, tz)),
        Value::TimestampTz(t) => Json::String(
            t.with_timezone(&tz)
                .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false),
        ),
    }
}

/// A time without a zone, read as a time of `tz`, in RFC 3339. A local time that does
/// not exist or is ambiguous (a daylight-saving change) takes the earlier reading.
fn local(t: NaiveDateTime, tz: Tz) -> String {
    match tz.from_local_datetime(&t).earliest() {
        Some(z) => z.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false),
        None => tz
            .from_utc_datetime(&t)
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false),
    }
}

/// The batch's records: its rows (`I`/`U`, or `D` where a row carries a delete), then its
/// deletes, each `D` with its key and, where the batch has one, its version column (or the
/// tombstone's columns).
pub fn records(b: &Outgoing<'_>, tz: Tz) -> Vec<Record> {
    let t = b.target;
    let mut out = Vec::with_capacity(b.rows.len() + b.deletes.len());
    for (i, (row, op)) in b.rows.iter().zip(b.ops).enumerate() {
        let key: Map<String, Json> = t
            .key
            .iter()
            .map(|&k| (t.columns[k].name.to_string(), value(&row[k], tz)))
            .collect();
        let values: Map<String, Json> = t
            .columns
            .iter()
            .zip(row)
            .map(|(c, v)| (c.name.to_string(), value(v, tz)))
            .collect();
        out.push(Record {
            origin: Origin {
                delete: false,
                index: i,
            },
            json: record(op.letter(false), key, values),
        });
    }
    let n = t.key.len();
    for (i, d) in b.deletes.iter().enumerate() {
        // The layout of a delete's values is the seam's (see `Removal`).
        let (key_vals, rest, rest_cols): (&[Value], &[Value], Vec<usize>) = match b.removal {
            Removal::Versioned => (
                &d[..n.min(d.len())],
                &d[n.min(d.len())..],
                t.version.into_iter().collect(),
            ),
            Removal::Unconditional => (&d[..n.min(d.len())], &[], Vec::new()),
            Removal::Tombstone => {
                let split = d.len().saturating_sub(n);
                (&d[split..], &d[..split], t.tombstone.clone())
            }
        };
        let key: Map<String, Json> = t
            .key
            .iter()
            .zip(key_vals)
            .map(|(&k, v)| (t.columns[k].name.to_string(), value(v, tz)))
            .collect();
        let mut values = key.clone();
        for (&c, v) in rest_cols.iter().zip(rest) {
            values.insert(t.columns[c].name.to_string(), value(v, tz));
        }
        out.push(Record {
            origin: Origin {
                delete: true,
                index: i,
            },
            json: record(Op::Delete.letter(false), key, values),
        });
    }
    out
}

fn record(op: &str, key: Map<String, Json>, values: Map<String, Json>) -> Json {
    let mut m = Map::with_capacity(3);
    m.insert("op".into(), Json::String(op.into()));
    m.insert("key".into(), Json::Object(key));
    m.insert("values".into(), Json::Object(values));
    Json::Object(m)
}

/// The request body of some of a batch's records.
pub fn body(agent: &str, table: &str, batch: &str, cd_batch: &str, records: &[Record]) -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct Envelope<'a> {
        agent: &'a str,
        table: &'a str,
        batch: &'a str,
        cd_batch: &'a str,
        records: Vec<&'a Json>,
    }
    let e = Envelope {
        agent,
        table,
        batch,
        cd_batch,
        records: records.iter().map(|r| &r.json).collect(),
    };
    // Serialising a tree of JSON values with string keys cannot fail.
    serde_json::to_vec(&e).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ident::{Col, Ident, TableName};
    use crate::sink::{Target, Tuples};
    use crate::value::ColType;
    use chrono::{NaiveDate, NaiveTime};

    fn col(name: &str, ty: ColType) -> Col {
        Col {
            name: Ident::new(name).expect("ident"),
            ty,
            native: "x".into(),
        }
    }

    #[test]
    fn values_travel_in_the_envelope_encodings() {
        let tz: Tz = "Asia/Shanghai".parse().expect("tz");
        let d = NaiveDate::from_ymd_opt(2026, 3, 9).expect("date");
        let ts = d.and_time(NaiveTime::from_hms_micro_opt(8, 30, 0, 250_000).expect("time"));
        let cases = [
            (Value::Null, serde_json::json!(null)),
            (Value::Int(-42), serde_json::json!(-42)),
            (Value::Decimal("12.50".into()), serde_json::json!("12.50")),
            (Value::Date(d), serde_json::json!("2026-03-09")),
            (
                Value::Timestamp(ts),
                serde_json::json!("2026-03-09T08:30:00.250+08:00"),
            ),
            (
                Value::TimestampTz(ts.and_utc()),
                serde_json::json!("2026-03-09T16:30:00.250+08:00"),
            ),
            (Value::Bytes(vec![0, 255, 1]), serde_json::json!("AP8B")),
            (Value::Bool(true), serde_json::json!(true)),
            (Value::Float(f64::NAN), serde_json::json!("NaN")),
        ];
        for (v, want) in cases {
            assert_eq!(value(&v, tz), want, "{v:?}");
        }
    }

    #[test]
    fn rows_and_deletes_become_records_with_key_and_version() {
        let target = Target {
            table: TableName::parse("jg_t").expect("name"),
            columns: vec![
                col("id", ColType::Int),
                col("name", ColType::Text),
                col("updated_at", ColType::Timestamp),
            ],
            key: vec![0],
            version: Some(2),
            tombstone: Vec::new(),
        };
        let ts = NaiveDate::from_ymd_opt(2026, 1, 2)
            .expect("date")
            .and_hms_opt(3, 4, 5)
            .expect("time");
        let rows = vec![vec![
            Value::Int(1),
            Value::Text("a".into()),
            Value::Timestamp(ts),
        ]];
        let deletes = vec![vec![Value::Int(2), Value::Timestamp(ts)]];
        let b = Outgoing {
            id: "A-t-1",
            cd_batch: "2026010200001",
            label: "t",
            target: &target,
            rows: &rows,
            ops: &[Op::Update],
            tuples: &Tuples::default(),
            deletes: &deletes,
            removal: Removal::Versioned,
        };
        let r = records(&b, chrono_tz::UTC);
        assert_eq!(r.len(), 2);
        assert_eq!(
            r[0].json,
            serde_json::json!({"op": "U", "key": {"id": 1},
                "values": {"id": 1, "name": "a", "updated_at": "2026-01-02T03:04:05+00:00"}})
        );
        assert_eq!(
            r[1].json,
            serde_json::json!({"op": "D", "key": {"id": 2},
                "values": {"id": 2, "updated_at": "2026-01-02T03:04:05+00:00"}})
        );
        assert_eq!(
            r[1].origin,
            Origin {
                delete: true,
                index: 0
            }
        );
        let body: serde_json::Value =
            serde_json::from_slice(&body("A", "jg_t", "A-t-1", "2026010200001", &r)).expect("json");
        assert_eq!(body["agent"], "A");
        assert_eq!(body["batch"], "A-t-1");
        assert_eq!(body["records"].as_array().map(Vec::len), Some(2));
    }
}
