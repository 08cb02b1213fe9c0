//! The built-in envelope: a batch as one JSON body of records, each with its operation,
//! its key and its values under the exchange's column names.

use base64::Engine as _;
use chrono::{NaiveDateTime, TimeZone};
use chrono_tz::Tz;
use serde_json::{Map, Value as Json};

use crate::config::http::{Envelope, RecordShape};
use crate::sink::{Op, Outgoing, Removal};
use crate::value::Value;

/// How values are written: the zone of times stored without one, and the envelope's
/// formats.
pub struct Format<'a> {
    /// The agent's zone: a time stored without a zone is a time of it.
    pub tz: Tz,
    pub env: &'a Envelope,
}

impl Format<'_> {
    /// A value of a column.
    fn column(&self, name: &str, v: &Value) -> Json {
        if let Value::Text(s) = v
            && self.env.json_columns.iter().any(|c| c == name)
            && let Ok(j) = serde_json::from_str(s)
        {
            return j;
        }
        match v {
            Value::Date(d) => Json::String(d.format(&self.env.date_format).to_string()),
            Value::Timestamp(_) | Value::TimestampTz(_) if self.env.time_format.is_some() => {
                let utc = match v {
                    Value::Timestamp(t) => tz_local(*t, self.tz).with_timezone(&chrono::Utc),
                    Value::TimestampTz(t) => *t,
                    _ => return Json::Null,
                };
                let out = self.env.tz.unwrap_or(self.tz);
                let f = self.env.time_format.as_deref().unwrap_or_default();
                Json::String(utc.with_timezone(&out).format(f).to_string())
            }
            _ => value(v, self.env.tz.unwrap_or(self.tz)),
        }
    }
}

/// A time without a zone as a time of `tz` (a local time that does not exist or is
/// ambiguous takes the earlier reading).
fn tz_local(t: NaiveDateTime, tz: Tz) -> chrono::DateTime<Tz> {
    tz.from_local_datetime(&t)
        .earliest()
        .unwrap_or_else(|| tz.from_utc_datetime(&t))
}

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

/// A time without a zone, read as a time of `tz`, in RFC 3339.
fn local(t: NaiveDateTime, tz: Tz) -> String {
    tz_local(t, tz).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false)
}

/// The batch's records: its rows (`I`/`U`, or `D` where a row carries a delete), then its
/// deletes, each `D` with its key and, where the batch has one, its version column (or the
/// tombstone's columns).
pub fn records(b: &Outgoing<'_>, f: &Format<'_>) -> Result<Vec<Record>, String> {
    let t = b.target;
    if f.env.record == RecordShape::Values && !b.deletes.is_empty() {
        return Err(format!(
            "{} delete(s) to send, and the configured envelope carries values only \
             (exchange.envelope.record = \"values\")",
            b.deletes.len()
        ));
    }
    let col = |i: usize, v: &Value| {
        (
            t.columns[i].name.to_string(),
            f.column(t.columns[i].name.as_str(), v),
        )
    };
    let mut out = Vec::with_capacity(b.rows.len() + b.deletes.len());
    for (i, (row, op)) in b.rows.iter().zip(b.ops).enumerate() {
        let key: Map<String, Json> = t.key.iter().map(|&k| col(k, &row[k])).collect();
        let values: Map<String, Json> = row.iter().enumerate().map(|(i, v)| col(i, v)).collect();
        let json = match f.env.record {
            RecordShape::BuiltIn => record(op.letter(false), key, values),
            RecordShape::Values => Json::Object(values),
        };
        out.push(Record {
            origin: Origin {
                delete: false,
                index: i,
            },
            json,
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
            .map(|(&k, v)| col(k, v))
            .collect();
        let mut values = key.clone();
        for (&c, v) in rest_cols.iter().zip(rest) {
            let (name, j) = col(c, v);
            values.insert(name, j);
        }
        out.push(Record {
            origin: Origin {
                delete: true,
                index: i,
            },
            json: record(Op::Delete.letter(false), key, values),
        });
    }
    Ok(out)
}

fn record(op: &str, key: Map<String, Json>, values: Map<String, Json>) -> Json {
    let mut m = Map::with_capacity(3);
    m.insert("op".into(), Json::String(op.into()));
    m.insert("key".into(), Json::Object(key));
    m.insert("values".into(), Json::Object(values));
    Json::Object(m)
}

/// What a request says besides its records.
pub struct Wrapper<'a> {
    pub agent: &'a str,
    pub table: &'a str,
    pub batch: &'a str,
    pub cd_batch: &'a str,
    /// A login token carried in the body.
    pub token: Option<&'a str>,
    /// A field saying what kind of batch this is (`[resync] full_field`).
    pub mark: Option<(&'a str, &'a str)>,
}

/// The request body of some of a batch's records: the envelope's constant fields, the
/// wrapper fields it names, and the records where it says.
pub fn body(env: &Envelope, w: &Wrapper<'_>, records: &[Record]) -> Vec<u8> {
    let mut root = Json::Object(env.fields.clone());
    let named = [
        (&env.agent_field, Some(w.agent)),
        (&env.table_field, Some(w.table)),
        (&env.batch_field, Some(w.batch)),
        (&env.cd_batch_field, Some(w.cd_batch)),
        (&env.token_field, w.token),
    ];
    for (field, value) in named {
        if let (Some(f), Some(v), Json::Object(m)) = (field, value, &mut root) {
            m.insert(f.clone(), Json::String(v.to_owned()));
        }
    }
    if let (Some((f, v)), Json::Object(m)) = (w.mark, &mut root) {
        m.insert(f.to_owned(), Json::String(v.to_owned()));
    }
    // The records are written where the pointer says without copying them into the tree: a
    // placeholder marks the place, and the serialiser puts them there.
    put(&mut root, &env.records, Json::Null);
    let path = pointer_parts(&env.records);
    let spliced = Spliced {
        at: &root,
        path: &path,
        records,
    };
    // Serialising JSON values with string keys cannot fail.
    serde_json::to_vec(&spliced).unwrap_or_default()
}

/// `at`, with `records` as a list where `path` leads (an empty path: `at` is that place).
struct Spliced<'a> {
    at: &'a Json,
    path: &'a [String],
    records: &'a [Record],
}

impl serde::Serialize for Spliced<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        let Some((first, rest)) = self.path.split_first() else {
            let mut seq = s.serialize_seq(Some(self.records.len()))?;
            for r in self.records {
                seq.serialize_element(&r.json)?;
            }
            return seq.end();
        };
        let Json::Object(m) = self.at else {
            return self.at.serialize(s);
        };
        let mut map = s.serialize_map(Some(m.len()))?;
        for (k, v) in m {
            if k == first {
                let inner = Spliced {
                    at: v,
                    path: rest,
                    records: self.records,
                };
                map.serialize_entry(k, &inner)?;
            } else {
                map.serialize_entry(k, v)?;
            }
        }
        map.end()
    }
}

/// The names a JSON pointer leads through (`/data/items` → `data`, `items`).
fn pointer_parts(pointer: &str) -> Vec<String> {
    pointer
        .split('/')
        .skip(1)
        .map(|p| p.replace("~1", "/").replace("~0", "~"))
        .collect()
}

/// Set the value at a JSON pointer, making the objects on the way.
fn put(root: &mut Json, pointer: &str, value: Json) {
    let mut at = root;
    let parts = pointer_parts(pointer);
    for (i, p) in parts.iter().enumerate() {
        if !at.is_object() {
            *at = Json::Object(Map::new());
        }
        let Json::Object(m) = at else { return };
        if i + 1 == parts.len() {
            m.insert(p.clone(), value);
            return;
        }
        at = m
            .entry(p.clone())
            .or_insert_with(|| Json::Object(Map::new()));
    }
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
            mark: None,
            deletes: &deletes,
            removal: Removal::Versioned,
        };
        let env = Envelope::built_in();
        let r = records(
            &b,
            &Format {
                tz: chrono_tz::UTC,
                env: &env,
            },
        )
        .expect("records");
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
        let w = Wrapper {
            agent: "A",
            table: "jg_t",
            batch: "A-t-1",
            cd_batch: "2026010200001",
            token: None,
            mark: None,
        };
        let body: serde_json::Value = serde_json::from_slice(&body(&env, &w, &r)).expect("json");
        assert_eq!(body["agent"], "A");
        assert_eq!(body["batch"], "A-t-1");
        assert_eq!(body["records"].as_array().map(Vec::len), Some(2));

        // A province's own envelope: values alone under /data, its fields, its formats.
        let mut qcvn = Envelope::built_in();
        qcvn.record = RecordShape::Values;
        qcvn.records = "/data".into();
        qcvn.agent_field = None;
        qcvn.table_field = None;
        qcvn.batch_field = None;
        qcvn.cd_batch_field = None;
        qcvn.token_field = Some("session".into());
        qcvn.fields
            .insert("isUpdating".into(), serde_json::json!(true));
        qcvn.time_format = Some("%Y%m%d%H%M%S".into());
        qcvn.tz = Some("Asia/Ho_Chi_Minh".parse().expect("tz"));
        let f = Format {
            tz: "Asia/Shanghai".parse().expect("tz"),
            env: &qcvn,
        };
        assert!(
            records(&b, &f).is_err(),
            "values alone cannot carry a delete"
        );
        let b = Outgoing { deletes: &[], ..b };
        let r = records(&b, &f).expect("records");
        let w = Wrapper {
            token: Some("s1"),
            ..w
        };
        let packet: serde_json::Value =
            serde_json::from_slice(&super::body(&qcvn, &w, &r)).expect("json");
        assert_eq!(
            packet,
            serde_json::json!({"isUpdating": true, "session": "s1",
                "data": [{"id": 1, "name": "a", "updated_at": "20260102020405"}]})
        );
    }
}
