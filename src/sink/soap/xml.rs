//! The request: a SOAP envelope whose body is the configured operation, carrying the
//! batch's records as elements per record and column, or as one GZIP+Base64 payload of the
//! HTTP envelope's JSON records or of CSV. Values are written as the HTTP envelope writes
//! them (its encoder makes them): decimals with their exact digits, dates, RFC 3339 times
//! with their offset, binary as Base64, NULL as `xsi:nil` or no element.

use std::io::Write as _;

use base64::Engine as _;
use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use serde_json::Value as Json;

use crate::config::soap::{Payload, SoapExchange, SoapVersion};
use crate::sink::http::encode::Record;

pub const SOAP11: &str = "http://schemas.xmlsoap.org/soap/envelope/";
pub const SOAP12: &str = "http://www.w3.org/2003/05/soap-envelope";
const XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";

/// What a request says besides its records.
pub struct Wrapper<'a> {
    pub agent: &'a str,
    pub table: &'a str,
    /// The id of this request: the batch's, or of a part of it (the idempotency key).
    pub batch: &'a str,
    pub cd_batch: &'a str,
    /// A login token carried in the body.
    pub token: Option<&'a str>,
    /// The exchange's column names in row order: the order of elements and CSV fields.
    pub columns: &'a [String],
}

/// A value as text, as the HTTP envelope holds it; `None` for NULL.
pub fn text(v: &Json) -> Option<String> {
    match v {
        Json::Null => None,
        Json::String(s) => Some(s.clone()),
        Json::Bool(b) => Some(b.to_string()),
        other => Some(other.to_string()),
    }
}

/// The first character XML 1.0 cannot carry in `s` (control characters other than tab,
/// line feed and carriage return, U+FFFE, U+FFFF), even escaped.
pub fn unwritable(s: &str) -> Option<char> {
    s.chars().find(|&c| {
        (c < '\u{20}' && !matches!(c, '\t' | '\n' | '\r')) || matches!(c, '\u{FFFE}' | '\u{FFFF}')
    })
}

/// Why a record cannot travel as XML: a column whose text XML cannot hold.
pub fn refuse_in_xml(r: &Record) -> Option<String> {
    let values = r.json.get("values")?.as_object()?;
    values.iter().find_map(|(col, v)| {
        let t = text(v)?;
        let c = unwritable(&t)?;
        Some(format!(
            "column {col} holds the control character U+{:04X}, which XML cannot carry; \
             correct the value at the source",
            c as u32
        ))
    })
}

/// Escaped text: XML's five characters, and a carriage return as a reference so that it
/// survives the reader's line-end normalisation.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
    out
}

/// The envelope of one request.
pub fn request(cfg: &SoapExchange, w: &Wrapper<'_>, records: &[Record]) -> Result<Vec<u8>, String> {
    let mut x = Writer::new(Vec::with_capacity(512 + records.len() * 256));
    let io = |e: std::io::Error| e.to_string();
    let soap = match cfg.version {
        SoapVersion::V11 => SOAP11,
        SoapVersion::V12 => SOAP12,
    };
    x.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))
        .map_err(io)?;
    x.write_event(Event::Start(
        BytesStart::new("soap:Envelope")
            .with_attributes([("xmlns:soap", soap), ("xmlns:xsi", XSI)]),
    ))
    .map_err(io)?;
    if let Some(h) = &cfg.names.header_batch {
        x.write_event(Event::Start(BytesStart::new("soap:Header")))
            .map_err(io)?;
        let name = format!("m:{h}");
        let start =
            BytesStart::new(name.as_str()).with_attributes([("xmlns:m", cfg.namespace.as_str())]);
        leaf_with(&mut x, start, &name, Some(w.batch)).map_err(io)?;
        x.write_event(Event::End(BytesEnd::new("soap:Header")))
            .map_err(io)?;
    }
    x.write_event(Event::Start(BytesStart::new("soap:Body")))
        .map_err(io)?;
    let op = if cfg.qualified {
        BytesStart::new(cfg.operation.as_str()).with_attributes([("xmlns", cfg.namespace.as_str())])
    } else {
        BytesStart::new(format!("m:{}", cfg.operation))
            .with_attributes([("xmlns:m", cfg.namespace.as_str())])
    };
    let op_end = op.name().as_ref().to_owned();
    x.write_event(Event::Start(op)).map_err(io)?;
    let n = &cfg.names;
    for (name, value) in [
        (&n.agent, Some(w.agent)),
        (&n.table, Some(w.table)),
        (&n.batch, Some(w.batch)),
        (&n.cd_batch, Some(w.cd_batch)),
        (&n.token, w.token),
    ] {
        if let (Some(name), Some(value)) = (name, value) {
            leaf(&mut x, name, Some(value)).map_err(io)?;
        }
    }
    match cfg.payload {
        Payload::Xml => xml_records(&mut x, cfg, w.columns, records).map_err(io)?,
        Payload::JsonGzipBase64 => {
            let list = Json::Array(records.iter().map(|r| r.json.clone()).collect());
            let json = serde_json::to_vec(&list).map_err(|e| e.to_string())?;
            leaf(&mut x, &n.payload, Some(&gzip_base64(&json)?)).map_err(io)?;
        }
        Payload::CsvGzipBase64 => {
            let csv = csv(w.columns, records)?;
            leaf(&mut x, &n.payload, Some(&gzip_base64(&csv)?)).map_err(io)?;
        }
    }
    x.write_event(Event::End(BytesEnd::new(op_end)))
        .map_err(io)?;
    x.write_event(Event::End(BytesEnd::new("soap:Body")))
        .map_err(io)?;
    x.write_event(Event::End(BytesEnd::new("soap:Envelope")))
        .map_err(io)?;
    Ok(x.into_inner())
}

type Out = Writer<Vec<u8>>;

/// An element with its text, or `xsi:nil` for `None`.
fn leaf(x: &mut Out, name: &str, value: Option<&str>) -> std::io::Result<()> {
    leaf_with(x, BytesStart::new(name), name, value)
}

fn leaf_with(
    x: &mut Out,
    start: BytesStart<'_>,
    end: &str,
    value: Option<&str>,
) -> std::io::Result<()> {
    match value {
        None => x.write_event(Event::Empty(start.with_attributes([("xsi:nil", "true")]))),
        Some(v) => {
            x.write_event(Event::Start(start))?;
            x.write_event(Event::Text(BytesText::from_escaped(escape(v))))?;
            x.write_event(Event::End(BytesEnd::new(end)))
        }
    }
}

/// `<records><record><op/><key>…</key><values>…</values></record>…</records>`, the columns
/// in row order.
fn xml_records(
    x: &mut Out,
    cfg: &SoapExchange,
    columns: &[String],
    records: &[Record],
) -> std::io::Result<()> {
    let n = &cfg.names;
    x.write_event(Event::Start(BytesStart::new(n.records.as_str())))?;
    for r in records {
        x.write_event(Event::Start(BytesStart::new(n.record.as_str())))?;
        let op = r.json.get("op").and_then(Json::as_str).unwrap_or_default();
        leaf(x, &n.op, Some(op))?;
        for (wrapper, field) in [(&n.key, "key"), (&n.values, "values")] {
            x.write_event(Event::Start(BytesStart::new(wrapper.as_str())))?;
            if let Some(m) = r.json.get(field).and_then(Json::as_object) {
                for c in columns {
                    let Some(v) = m.get(c) else { continue };
                    let t = text(v);
                    if t.is_none() && cfg.null_absent {
                        continue;
                    }
                    leaf(x, c, t.as_deref())?;
                }
            }
            x.write_event(Event::End(BytesEnd::new(wrapper.as_str())))?;
        }
        x.write_event(Event::End(BytesEnd::new(n.record.as_str())))?;
    }
    x.write_event(Event::End(BytesEnd::new(n.records.as_str())))
}

/// RFC 4180 CSV, UTF-8: a header `op,<columns>`, then each record's operation and values
/// (a delete has its key and version, the rest empty); NULL is an empty field.
pub fn csv(columns: &[String], records: &[Record]) -> Result<Vec<u8>, String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let err = |e: csv::Error| e.to_string();
    w.write_record(std::iter::once("op").chain(columns.iter().map(String::as_str)))
        .map_err(err)?;
    for r in records {
        let op = r.json.get("op").and_then(Json::as_str).unwrap_or_default();
        let values = r.json.get("values").and_then(Json::as_object);
        let fields = columns.iter().map(|c| {
            values
                .and_then(|m| m.get(c))
                .and_then(text)
                .unwrap_or_default()
        });
        w.write_record(std::iter::once(op.to_owned()).chain(fields))
            .map_err(err)?;
    }
    w.into_inner().map_err(|e| e.to_string())
}

/// Gzip, then standard Base64.
pub fn gzip_base64(bytes: &[u8]) -> Result<String, String> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes)
        .map_err(|e| format!("compressing the payload: {e}"))?;
    let zipped = gz
        .finish()
        .map_err(|e| format!("compressing the payload: {e}"))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(zipped))
}

/// The bytes of a GZIP+Base64 payload (the receiver's side).
pub fn unbase64_gunzip(text: &str) -> Result<Vec<u8>, String> {
    let clean: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let zipped = base64::engine::general_purpose::STANDARD
        .decode(clean)
        .map_err(|e| format!("the payload is not Base64: {e}"))?;
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&zipped[..]), &mut out)
        .map_err(|e| format!("the payload is not gzip: {e}"))?;
    Ok(out)
}

/// The HTTP headers of a request: the content type and the action, as the version wants.
pub fn headers(cfg: &SoapExchange) -> Vec<(&'static str, String)> {
    match cfg.version {
        SoapVersion::V11 => vec![
            ("Content-Type", "text/xml; charset=utf-8".into()),
            (
                "SOAPAction",
                format!("\"{}\"", cfg.action.as_deref().unwrap_or_default()),
            ),
        ],
        SoapVersion::V12 => vec![(
            "Content-Type",
            match &cfg.action {
                Some(a) => format!("application/soap+xml; charset=utf-8; action=\"{a}\""),
                None => "application/soap+xml; charset=utf-8".into(),
            },
        )],
    }
}
