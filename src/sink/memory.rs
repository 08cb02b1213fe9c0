//! A sink in memory, for unit tests of the job without a server: it keeps the rows by key
//! (newer wins by the version column), records every delivery as the bytes it would have
//! sent, refuses the rows a test says, and can stop answering after a delivery, as if the
//! agent died before it heard the acknowledgement.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{
    Capabilities, Deletes, Outgoing, Ready, Refusal, Removal, Sink, SinkError, TableSchema, Target,
    Turn,
};
use crate::ident::TableName;
use crate::value::{Value, key_text};

/// A delivery as the sink received it.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery {
    pub id: String,
    /// The batch as JSON: id, batch number, rows with their operations, deletes.
    pub bytes: Vec<u8>,
}

type Refuse = Box<dyn Fn(&[Value]) -> Option<String> + Send + Sync>;

pub struct MemorySink {
    schema: TableSchema,
    refuse: Refuse,
    inner: Mutex<Inner>,
    /// Told each time a delivery was recorded.
    pub delivered: tokio::sync::Notify,
}

#[derive(Default)]
struct Inner {
    rows: BTreeMap<String, Vec<Value>>,
    deliveries: Vec<Delivery>,
    /// Deliveries after which it stops answering (the agent "dies" waiting).
    silent_after: Option<usize>,
    /// Deliveries still to fail before anything is applied, and how.
    failing: Vec<super::ErrorClass>,
}

impl MemorySink {
    /// A sink holding one table as `schema` describes it; rows for which `refuse` gives a
    /// message are refused with it.
    pub fn new(
        schema: TableSchema,
        refuse: impl Fn(&[Value]) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        MemorySink {
            schema,
            refuse: Box::new(refuse),
            inner: Mutex::new(Inner::default()),
            delivered: tokio::sync::Notify::new(),
        }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stop answering once `n` deliveries in all were recorded; `None` answers again.
    pub fn silent_after(&self, n: Option<usize>) {
        self.inner().silent_after = n;
    }

    /// Fail the next deliveries, one per class given, before applying anything (the
    /// exchange down, a lock conflict).
    pub fn fail_next(&self, classes: &[super::ErrorClass]) {
        self.inner().failing = classes.to_vec();
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.inner().deliveries.clone()
    }

    /// The rows held, in key-text order.
    pub fn rows(&self) -> Vec<Vec<Value>> {
        self.inner().rows.values().cloned().collect()
    }

    fn encode(b: &Outgoing<'_>) -> Vec<u8> {
        let rows: Vec<serde_json::Value> = b
            .rows
            .iter()
            .zip(b.ops)
            .map(|(r, op)| serde_json::json!({ "op": op.letter(false), "values": r }))
            .collect();
        serde_json::json!({
            "id": b.id,
            "cd_batch": b.cd_batch,
            "rows": rows,
            "deletes": b.deletes,
        })
        .to_string()
        .into_bytes()
    }

    fn apply(&self, b: &Outgoing<'_>) -> Vec<Refusal> {
        let t = b.target;
        let key_of = |r: &[Value]| key_text(&t.key.iter().map(|&i| &r[i]).collect::<Vec<_>>());
        let mut refused = Vec::new();
        let mut inner = self.inner();
        for (i, r) in b.rows.iter().enumerate() {
            if let Some(message) = (self.refuse)(r) {
                refused.push(Refusal {
                    delete: false,
                    index: i,
                    message,
                    by: super::RefusedBy::Exchange,
                });
                continue;
            }
            let k = key_of(r);
            let older = match (t.version, inner.rows.get(&k)) {
                (Some(v), Some(held)) => crate::watermark::cmp_values(&held[v], &r[v]).is_gt(),
                _ => false,
            };
            if !older {
                inner.rows.insert(k, r.clone());
            }
        }
        for d in b.deletes {
            let n = t.key.len();
            let key: Vec<&Value> = match b.removal {
                Removal::Tombstone => d[d.len() - n..].iter().collect(),
                _ => d[..n].iter().collect(),
            };
            let k = key_text(&key);
            let newer = match (b.removal, t.version, inner.rows.get(&k)) {
                (Removal::Versioned, Some(v), Some(held)) => d
                    .get(n)
                    .is_some_and(|at| crate::watermark::cmp_values(&held[v], at).is_gt()),
                _ => false,
            };
            if !newer {
                inner.rows.remove(&k);
            }
        }
        refused
    }
}

#[async_trait::async_trait]
impl Sink for MemorySink {
    fn place(&self) -> &'static str {
        "memory"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            newer_wins: true,
            deletes: Deletes::Native,
            overlapping: false,
            max_rows: None,
            lists_keys: true,
            copy_tuples: false,
            text_without_nul: false,
            catalog: true,
            verdicts: false,
        }
    }

    async fn describe(&self, table: &TableName) -> Result<Option<TableSchema>, SinkError> {
        Ok((table.name == self.schema.name.name).then(|| self.schema.clone()))
    }

    async fn deliver(
        &self,
        b: &Outgoing<'_>,
        ready: Ready<'_>,
        turn: &Turn,
    ) -> Result<Vec<Refusal>, SinkError> {
        ready.await;
        let failure = {
            let mut inner = self.inner();
            (!inner.failing.is_empty()).then(|| inner.failing.remove(0))
        };
        if let Some(class) = failure {
            return Err(SinkError::Other {
                doing: "delivering a batch".into(),
                cause: format!("failing on purpose ({class:?})"),
                class,
            });
        }
        if !turn.before_committed().await {
            return Err(SinkError::Other {
                doing: "delivering a batch".into(),
                cause: "the batch before it was not delivered".into(),
                class: super::ErrorClass::Unavailable,
            });
        }
        let refused = self.apply(b);
        let silent = {
            let mut inner = self.inner();
            inner.deliveries.push(Delivery {
                id: b.id.to_owned(),
                bytes: Self::encode(b),
            });
            inner
                .silent_after
                .is_some_and(|n| inner.deliveries.len() >= n)
        };
        self.delivered.notify_waiters();
        if silent {
            std::future::pending::<()>().await;
        }
        Ok(refused)
    }

    async fn keys(
        &self,
        target: &Target,
        after: Option<&[Value]>,
        up_to: Option<&[Value]>,
        limit: usize,
    ) -> Result<Vec<Vec<Value>>, SinkError> {
        use crate::watermark::cmp_tuple;
        let mut keys: Vec<Vec<Value>> = self
            .inner()
            .rows
            .values()
            .map(|r| target.key.iter().map(|&i| r[i].clone()).collect())
            .filter(|k: &Vec<Value>| after.is_none_or(|a| cmp_tuple(k, a).is_gt()))
            .filter(|k: &Vec<Value>| up_to.is_none_or(|u| cmp_tuple(k, u).is_le()))
            .collect();
        keys.sort_by(|a, b| cmp_tuple(a, b));
        keys.truncate(limit);
        Ok(keys)
    }

    async fn health(&self) -> Result<(), SinkError> {
        Ok(())
    }

    async fn close(&self) {}
}

pub use super::NoReceipts;
