//! Telling the province that a full resync of a table started or ended (DB23/T 2835 7.3.4):
//! a row in a notice table of the exchange database, or a request to an HTTP endpoint. A
//! notice names its resync, so that one told again (after a crash) replaces itself.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::SinkError;
use crate::db::dialect::Upsert;
use crate::db::{Db, ErrorClass, Tuples, WriteBatch};
use crate::ident::{Col, Ident, TableName};
use crate::value::Value;

/// A full resync, as the province is told of it.
#[derive(Clone, Debug)]
pub struct ResyncEvent<'a> {
    /// The resync's id: agent, table and run, the same in both of its notices.
    pub id: &'a str,
    pub agent: &'a str,
    /// The table at the exchange.
    pub table: &'a str,
    pub reason: &'a str,
    pub started_at: DateTime<Utc>,
    /// Set when it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// Rows at the source when it started; rows sent when it ended.
    pub rows: Option<u64>,
    /// The zone of times stored without one.
    pub tz: Tz,
}

/// Columns of a notice table; the first three are required, the others filled where the
/// table has them.
pub const COLUMNS: [&str; 8] = [
    "resync_id",
    "table_name",
    "status",
    "agent_id",
    "reason",
    "started_at",
    "finished_at",
    "row_count",
];

impl ResyncEvent<'_> {
    /// `started` or `finished`.
    pub fn status(&self) -> &'static str {
        if self.finished_at.is_some() {
            "finished"
        } else {
            "started"
        }
    }

    fn value(&self, column: &str) -> Value {
        let time = |t: Option<DateTime<Utc>>| t.map_or(Value::Null, Value::TimestampTz);
        match column {
            "resync_id" => Value::Text(self.id.into()),
            "table_name" => Value::Text(self.table.into()),
            "status" => Value::Text(self.status().into()),
            "agent_id" => Value::Text(self.agent.into()),
            "reason" => Value::Text(self.reason.into()),
            "started_at" => time(Some(self.started_at)),
            "finished_at" => time(self.finished_at),
            "row_count" => self
                .rows
                .and_then(|r| i64::try_from(r).ok())
                .map_or(Value::Null, Value::Int),
            _ => Value::Null,
        }
    }

    /// The notice as a JSON object, with the same fields as a notice table's columns.
    pub fn json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        for c in COLUMNS {
            let v = match self.value(c) {
                Value::Null => serde_json::Value::Null,
                Value::Int(i) => serde_json::Value::from(i),
                Value::TimestampTz(t) => serde_json::Value::from(t.to_rfc3339()),
                v => serde_json::Value::from(v.to_text()),
            };
            m.insert(c.to_owned(), v);
        }
        serde_json::Value::Object(m)
    }
}

fn refused(cause: String) -> SinkError {
    SinkError::Other {
        doing: "telling the province of a full resync".into(),
        cause,
        class: ErrorClass::Fatal,
    }
}

/// Write (or replace) the notice's row in `table` of the exchange database.
pub async fn write_row(db: &Db, table: &TableName, e: &ResyncEvent<'_>) -> Result<(), SinkError> {
    let schema = db.introspect(table).await?.ok_or_else(|| {
        refused(format!(
            "notice table {table} does not exist in the exchange database (columns: {})",
            COLUMNS.join(", ")
        ))
    })?;
    let cols: Vec<Col> = COLUMNS
        .iter()
        .filter_map(|c| schema.column(&Ident::fixed(c)).cloned())
        .collect();
    for required in &COLUMNS[..3] {
        if !cols
            .iter()
            .any(|c| c.name.as_str().eq_ignore_ascii_case(required))
        {
            return Err(refused(format!(
                "notice table {} has no column `{required}`",
                schema.name
            )));
        }
    }
    if !schema.has_unique(&[Ident::fixed("resync_id")]) {
        return Err(refused(format!(
            "notice table {} needs a primary key or unique index on resync_id",
            schema.name
        )));
    }
    let row = cols
        .iter()
        .map(|c| {
            e.value(&c.name.as_str().to_ascii_lowercase())
                .coerce(c.ty, &e.tz)
                .map_err(|m| refused(format!("notice column {}: {m}", c.name)))
        })
        .collect::<Result<Vec<Value>, SinkError>>()?;
    let write = WriteBatch {
        upsert: Upsert {
            table: &schema.name,
            columns: &cols,
            key: &[0],
            version: None,
        },
        rows: &[row],
        tuples: &Tuples::default(),
        key_cols: &cols[..1],
        version_col: None,
        deletes: &[],
        tombstone: None,
    };
    match db.write(&write).await?.first() {
        Some((_, _, m)) => Err(refused(format!(
            "notice table {} refused the notice: {m}",
            schema.name
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notice_says_what_it_is_in_json() {
        let t = DateTime::parse_from_rfc3339("2026-12-07T01:02:03Z")
            .expect("t")
            .with_timezone(&Utc);
        let e = ResyncEvent {
            id: "A-t-1",
            agent: "A",
            table: "jg_t",
            reason: "asked",
            started_at: t,
            finished_at: None,
            rows: Some(7),
            tz: chrono_tz::UTC,
        };
        let j = e.json();
        assert_eq!(j["status"], "started");
        assert_eq!(j["row_count"], 7);
        assert_eq!(j["finished_at"], serde_json::Value::Null);
        let done = ResyncEvent {
            finished_at: Some(t),
            ..e
        };
        assert_eq!(done.json()["status"], "finished");
    }
}
