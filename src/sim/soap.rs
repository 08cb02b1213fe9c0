//! The receiver's WebService: `POST /soap/{table}` takes one call of any operation, SOAP 1.1
//! or 1.2, its records as the SOAP exchange's default elements or as a GZIP+Base64 JSON or
//! CSV payload, and answers `<operation>Response` with `code`, `message` and the rejected
//! records. What it takes goes through the same checks and into the same store as the JSON
//! envelope (`take`); a request refused whole is a `Client`/`Sender` fault, an injected
//! error a `Server`/`Receiver` fault.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use quick_xml::escape::escape;
use serde_json::{Map, Value as Json};

use super::{Sim, Taken, authorised, drop_connection, header, take};
use crate::sink::soap::tree::{self, Node};
use crate::sink::soap::xml::{SOAP11, SOAP12, unbase64_gunzip};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Version {
    V11,
    V12,
}

/// Who a fault blames.
#[derive(Clone, Copy)]
enum Blame {
    Sender,
    Receiver,
}

fn reply(v: Version, status: StatusCode, body: &str) -> Response {
    let (ns, ct) = match v {
        Version::V11 => (SOAP11, "text/xml; charset=utf-8"),
        Version::V12 => (SOAP12, "application/soap+xml; charset=utf-8"),
    };
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><soap:Envelope xmlns:soap=\"{ns}\">\
         <soap:Body>{body}</soap:Body></soap:Envelope>"
    );
    (status, [("Content-Type", ct)], xml).into_response()
}

fn fault(v: Version, status: StatusCode, blame: Blame, why: &str) -> Response {
    let why = escape(why);
    let body = match (v, blame) {
        (Version::V11, b) => format!(
            "<soap:Fault><faultcode>soap:{}</faultcode><faultstring>{why}</faultstring></soap:Fault>",
            match b {
                Blame::Sender => "Client",
                Blame::Receiver => "Server",
            }
        ),
        (Version::V12, b) => format!(
            "<soap:Fault><soap:Code><soap:Value>soap:{}</soap:Value></soap:Code>\
             <soap:Reason><soap:Text xml:lang=\"en\">{why}</soap:Text></soap:Reason></soap:Fault>",
            match b {
                Blame::Sender => "Sender",
                Blame::Receiver => "Receiver",
            }
        ),
    };
    reply(v, status, &body)
}

/// The answer of an operation taken: its code, and the records rejected.
fn taken(v: Version, op: &str, a: &Json) -> Response {
    let text = |j: Option<&Json>| match j {
        Some(Json::String(s)) => escape(s).into_owned(),
        Some(Json::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    let code = text(a.get("code"));
    if code != "0" {
        return fault(
            v,
            StatusCode::INTERNAL_SERVER_ERROR,
            Blame::Sender,
            &text(a.get("message")),
        );
    }
    let rejected: String = a
        .get("rejected")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
        .map(|r| {
            format!(
                "<record><index>{}</index><code>{}</code><message>{}</message></record>",
                text(r.get("index")),
                text(r.get("code")),
                text(r.get("message"))
            )
        })
        .collect();
    reply(
        v,
        StatusCode::OK,
        &format!(
            "<{op}Response xmlns=\"urn:exchange-sim\"><code>0</code><message>OK</message>\
             <rejected>{rejected}</rejected></{op}Response>"
        ),
    )
}

/// The SOAP version a request's content type says, and whether its action names `op`.
fn version(h: &HeaderMap) -> Option<Version> {
    let ct = header(h, "Content-Type").unwrap_or_default();
    if ct.starts_with("text/xml") && h.contains_key("SOAPAction") {
        Some(Version::V11)
    } else if ct.starts_with("application/soap+xml") {
        Some(Version::V12)
    } else {
        None
    }
}

fn action_names(v: Version, h: &HeaderMap, op: &str) -> bool {
    let action = match v {
        Version::V11 => header(h, "SOAPAction").map(str::to_owned),
        Version::V12 => header(h, "Content-Type").and_then(|ct| {
            ct.split(';')
                .filter_map(|p| p.trim().strip_prefix("action="))
                .next()
                .map(str::to_owned)
        }),
    };
    action.is_none_or(|a| {
        let a = a.trim_matches('"');
        a.is_empty() || a.ends_with(op)
    })
}

pub(super) async fn call(
    State(sim): State<Arc<Sim>>,
    UrlPath(table): UrlPath<String>,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let Some(v) = version(&headers) else {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "a SOAP 1.1 call is text/xml with a SOAPAction header; a SOAP 1.2 call is application/soap+xml",
        )
            .into_response();
    };
    let f = &sim.cfg.faults;
    if sim.chance(f.slow_share) {
        tokio::time::sleep(f.slow).await;
    }
    if sim.chance(f.drop_share) {
        let _ = sim
            .store
            .log(None, Some(&table), "dropped before", None)
            .await;
        drop_connection();
    }
    if sim.chance(f.error_share) {
        let _ = sim.store.log(None, Some(&table), "soap fault", None).await;
        return fault(
            v,
            StatusCode::INTERNAL_SERVER_ERROR,
            Blame::Receiver,
            "injected fault",
        );
    }
    if let Err(why) = authorised(&sim, &headers, &format!("/soap/{table}"), &raw) {
        let _ = sim.store.log(None, Some(&table), why, None).await;
        return fault(v, StatusCode::UNAUTHORIZED, Blame::Sender, why);
    }
    let op = match tree::parse(&raw)
        .ok()
        .and_then(|d| d.body().and_then(|b| b.children.first().cloned()))
    {
        Some(op) => op,
        None => {
            return fault(
                v,
                StatusCode::INTERNAL_SERVER_ERROR,
                Blame::Sender,
                "not a SOAP envelope",
            );
        }
    };
    if !action_names(v, &headers, &op.name) {
        return fault(
            v,
            StatusCode::INTERNAL_SERVER_ERROR,
            Blame::Sender,
            "the action does not name the operation",
        );
    }
    let key_cols = sim
        .cfg
        .tables
        .get(&table)
        .map(|t| t.key.clone())
        .unwrap_or_default();
    let version_col = sim.cfg.tables.get(&table).and_then(|t| t.version.clone());
    let records = match records(&op, &key_cols, version_col.as_deref()) {
        Ok(r) => r,
        Err(why) => return fault(v, StatusCode::INTERNAL_SERVER_ERROR, Blame::Sender, &why),
    };
    let mut env = Map::new();
    if let Some(b) = op.text_of("batch") {
        env.insert("batch".into(), Json::String(b.to_owned()));
    }
    env.insert("records".into(), Json::Array(records));
    match take(&sim, &table, &headers, &Json::Object(env)).await {
        Ok(Taken::Answer(a)) => taken(v, &op.name, &a),
        Ok(Taken::DropAfter) => drop_connection(),
        Ok(Taken::Stall) => {
            std::future::pending::<()>().await;
            reply(v, StatusCode::OK, "")
        }
        Err(e) => fault(v, StatusCode::INTERNAL_SERVER_ERROR, Blame::Receiver, &e),
    }
}

/// The call's records in the JSON envelope's shape (`op`, `key`, `values`).
fn records(op: &Node, key_cols: &[String], version: Option<&str>) -> Result<Vec<Json>, String> {
    if let Some(list) = op.child("records") {
        return Ok(list
            .children
            .iter()
            .map(|r| {
                let cols = |wrapper: &str| -> Map<String, Json> {
                    r.child(wrapper)
                        .into_iter()
                        .flat_map(|w| &w.children)
                        .map(|c| (c.name.clone(), column(c, version)))
                        .collect()
                };
                serde_json::json!({
                    "op": r.text_of("op").unwrap_or_default(),
                    "key": cols("key"),
                    "values": cols("values"),
                })
            })
            .collect());
    }
    let payload = op
        .text_of("payload")
        .ok_or("neither records nor a payload in the call")?;
    let bytes = unbase64_gunzip(payload)?;
    if bytes.first() == Some(&b'[') {
        return match serde_json::from_slice::<Json>(&bytes) {
            Ok(Json::Array(a)) => Ok(a),
            _ => Err("the payload is not a JSON list of records".into()),
        };
    }
    csv_records(&bytes, key_cols, version)
}

/// A column's element: its text, or null when `xsi:nil`; the version column as a number
/// where it is one, so that versions compare by value.
fn column(c: &Node, version: Option<&str>) -> Json {
    if c.nil {
        return Json::Null;
    }
    if version == Some(c.name.as_str())
        && let Ok(n) = c.text.parse::<i64>()
    {
        return Json::from(n);
    }
    Json::String(c.text.clone())
}

/// A CSV payload: a header `op,<columns>`, then a record per line; an empty field is NULL.
fn csv_records(
    bytes: &[u8],
    key_cols: &[String],
    version: Option<&str>,
) -> Result<Vec<Json>, String> {
    if key_cols.is_empty() {
        return Err("a CSV payload needs the table's key in the receiver's configuration".into());
    }
    let mut r = csv::Reader::from_reader(bytes);
    let head = r.headers().map_err(|e| e.to_string())?.clone();
    let mut out = Vec::new();
    for row in r.records() {
        let row = row.map_err(|e| e.to_string())?;
        let mut values = Map::new();
        for (name, field) in head.iter().zip(row.iter()).skip(1) {
            let node = Node {
                name: name.to_owned(),
                text: field.to_owned(),
                nil: field.is_empty(),
                children: Vec::new(),
            };
            values.insert(name.to_owned(), column(&node, version));
        }
        let key: Map<String, Json> = key_cols
            .iter()
            .map(|k| (k.clone(), values.get(k).cloned().unwrap_or(Json::Null)))
            .collect();
        out.push(serde_json::json!({
            "op": row.get(0).unwrap_or_default(),
            "key": key,
            "values": values,
        }));
    }
    Ok(out)
}
