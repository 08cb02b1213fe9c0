//! The request as written and read back, the payloads, and what answers mean.

use std::time::Duration;

use super::answer::classify;
use super::tree::{Node, parse};
use super::xml::{self, Wrapper};
use super::*;
use crate::config::http::{Envelope, HttpAuth, HttpExchange};
use crate::config::soap::{Payload, SoapExchange, SoapVersion};
use crate::ident::{Col, Ident, TableName};
use crate::sink::http::answer::Rejected;
use crate::sink::{Op, Removal, Target, Tuples};
use crate::value::ColType;
use chrono::NaiveDate;

fn cfg() -> SoapExchange {
    let http = HttpExchange {
        url: "http://127.0.0.1:1/ws".into(),
        timeout: Duration::from_secs(5),
        gzip: false,
        ca_file: None,
        client_cert: None,
        max_records: None,
        auth: HttpAuth {
            kind: crate::config::http::AuthKind::None,
            app_key: None,
            app_secret: None,
            login: None,
        },
        envelope: Envelope::built_in(),
    };
    SoapExchange::with_defaults(http, "http://exchange.example.gov.cn/ws", "pushData")
}

fn col(name: &str, ty: ColType) -> Col {
    Col {
        name: Ident::new(name).expect("ident"),
        ty,
        native: "x".into(),
    }
}

const AWKWARD: &str = "统一社会信用代码 & <测试> \"引号\" '单' ]]> 第一行\r\n第二行\t末";

/// Three rows (one with awkward text, one with a NULL) and a delete with its version.
fn records() -> Vec<Record> {
    let target = Target {
        table: TableName::parse("jg_t").expect("name"),
        columns: vec![
            col("id", ColType::Int),
            col("name", ColType::Text),
            col("amount", ColType::Decimal),
            col("photo", ColType::Bytes),
            col("updated_at", ColType::Timestamp),
        ],
        key: vec![0],
        version: Some(4),
        tombstone: Vec::new(),
    };
    let ts = NaiveDate::from_ymd_opt(2026, 3, 9)
        .and_then(|d| d.and_hms_opt(8, 30, 0))
        .expect("time");
    let row = |id: i64, name: Value| {
        vec![
            Value::Int(id),
            name,
            Value::Decimal("12.50".into()),
            Value::Bytes(vec![0, 255, 1]),
            Value::Timestamp(ts),
        ]
    };
    let rows = vec![
        row(1, Value::Text(AWKWARD.into())),
        row(2, Value::Null),
        row(3, Value::Text("名称".into())),
    ];
    let deletes = vec![vec![Value::Int(9), Value::Timestamp(ts)]];
    let b = Outgoing {
        id: "A-t-1",
        cd_batch: "2026030900001",
        label: "t",
        target: &target,
        rows: &rows,
        ops: &[Op::Insert, Op::Update, Op::Update],
        tuples: &Tuples::default(),
        deletes: &deletes,
        removal: Removal::Versioned,
        mark: None,
    };
    let env = Envelope::built_in();
    let f = encode::Format {
        tz: "Asia/Shanghai".parse().expect("tz"),
        env: &env,
    };
    encode::records(&b, &f).expect("records")
}

const COLUMNS: [&str; 5] = ["id", "name", "amount", "photo", "updated_at"];

fn request(c: &SoapExchange, recs: &[Record]) -> (String, Node) {
    let columns: Vec<String> = COLUMNS.iter().map(|s| s.to_string()).collect();
    let w = Wrapper {
        agent: "A",
        table: "jg_t",
        batch: "A-t-1",
        cd_batch: "2026030900001",
        token: None,
        columns: &columns,
    };
    let bytes = xml::request(c, &w, recs).expect("request");
    let text = String::from_utf8(bytes.clone()).expect("utf-8");
    (text, parse(&bytes).expect("parse back"))
}

#[test]
fn records_travel_as_elements_escaped_and_read_back_exactly() {
    let c = cfg();
    let (text, doc) = request(&c, &records());
    assert!(text.contains("xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\""));
    assert!(text.contains("<pushData xmlns=\"http://exchange.example.gov.cn/ws\">"));
    assert!(text.contains("&amp; &lt;测试&gt;"), "{text}");
    assert!(
        text.contains("&#13;\n"),
        "a carriage return survives: {text}"
    );
    let header = doc.child("Header").expect("header");
    assert_eq!(header.text_of("BatchId"), Some("A-t-1"));
    let op = &doc.body().expect("body").children[0];
    assert_eq!(op.name, "pushData");
    assert_eq!(op.text_of("batch"), Some("A-t-1"));
    assert_eq!(op.text_of("cd_batch"), Some("2026030900001"));
    let recs = &op.child("records").expect("records").children;
    assert_eq!(recs.len(), 4);
    let values = |i: usize| recs[i].child("values").expect("values");
    assert_eq!(recs[0].text_of("op"), Some("I"));
    assert_eq!(values(0).text_of("name"), Some(AWKWARD));
    assert_eq!(values(0).text_of("amount"), Some("12.50"));
    assert_eq!(values(0).text_of("photo"), Some("AP8B"));
    assert_eq!(
        values(0).text_of("updated_at"),
        Some("2026-03-09T08:30:00+08:00")
    );
    // Columns in row order.
    let names: Vec<&str> = values(0).children.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, COLUMNS);
    // NULL as xsi:nil.
    let name = values(1).child("name").expect("name");
    assert!(name.nil && name.text.is_empty());
    assert_eq!(values(2).text_of("name"), Some("名称"));
    // A delete carries its key and its version, nothing else.
    assert_eq!(recs[3].text_of("op"), Some("D"));
    assert_eq!(
        recs[3].child("key").and_then(|k| k.text_of("id")),
        Some("9")
    );
    let names: Vec<&str> = values(3).children.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["id", "updated_at"]);
}

#[test]
fn soap_1_2_unqualified_elements_and_absent_nulls() {
    let mut c = cfg();
    c.version = SoapVersion::V12;
    c.qualified = false;
    c.null_absent = true;
    c.names.header_batch = None;
    c.names.record = "row".into();
    let (text, doc) = request(&c, &records());
    assert!(text.contains("xmlns:soap=\"http://www.w3.org/2003/05/soap-envelope\""));
    assert!(text.contains("<m:pushData xmlns:m=\"http://exchange.example.gov.cn/ws\">"));
    assert!(text.contains("</m:pushData>"));
    assert!(doc.child("Header").is_none());
    let op = &doc.body().expect("body").children[0];
    let rows = op.all(&["records".into(), "row".into()]);
    assert_eq!(rows.len(), 4);
    assert!(
        rows[1]
            .child("values")
            .expect("values")
            .child("name")
            .is_none()
    );
    let h = xml::headers(&c);
    assert_eq!(
        h,
        vec![(
            "Content-Type",
            "application/soap+xml; charset=utf-8; action=\"http://exchange.example.gov.cn/ws/pushData\""
                .to_owned()
        )]
    );
    let h = xml::headers(&cfg());
    assert_eq!(h[0].1, "text/xml; charset=utf-8");
    assert_eq!(
        h[1],
        (
            "SOAPAction",
            "\"http://exchange.example.gov.cn/ws/pushData\"".to_owned()
        )
    );
}

#[test]
fn payloads_are_the_json_records_or_csv_gzipped_in_base64() {
    let recs = records();
    let mut c = cfg();
    c.payload = Payload::JsonGzipBase64;
    let (_, doc) = request(&c, &recs);
    let op = &doc.body().expect("body").children[0];
    assert!(op.child("records").is_none());
    let json = xml::unbase64_gunzip(op.text_of("payload").expect("payload")).expect("decode");
    let back: serde_json::Value = serde_json::from_slice(&json).expect("json");
    let sent: Vec<serde_json::Value> = recs.iter().map(|r| r.json.clone()).collect();
    assert_eq!(back, serde_json::Value::Array(sent));

    c.payload = Payload::CsvGzipBase64;
    let (_, doc) = request(&c, &recs);
    let op = &doc.body().expect("body").children[0];
    let csv = xml::unbase64_gunzip(op.text_of("payload").expect("payload")).expect("decode");
    let mut r = csv::Reader::from_reader(&csv[..]);
    let head: Vec<String> = r
        .headers()
        .expect("header")
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(head, ["op", "id", "name", "amount", "photo", "updated_at"]);
    let rows: Vec<csv::StringRecord> = r.records().map(|x| x.expect("row")).collect();
    assert_eq!(rows.len(), 4);
    assert_eq!(&rows[0][2], AWKWARD);
    assert_eq!(&rows[1][2], "", "NULL is an empty field");
    assert_eq!(
        rows[3].iter().collect::<Vec<_>>(),
        ["D", "9", "", "", "", "2026-03-09T08:30:00+08:00"]
    );
}

#[test]
fn a_value_xml_cannot_carry_is_refused_alone_and_the_rest_goes() {
    let mut recs = records();
    recs[1].json["values"]["name"] = serde_json::json!("bell\u{7}");
    let (kept, refused) = carried(recs, Payload::Xml);
    assert_eq!(kept.len(), 3);
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].index, 1);
    assert_eq!(refused[0].by, RefusedBy::Exchange);
    assert!(
        refused[0].message.contains("column name") && refused[0].message.contains("U+0007"),
        "{}",
        refused[0].message
    );
    let mut recs = records();
    recs[1].json["values"]["name"] = serde_json::json!("bell\u{7}");
    let (kept, refused) = carried(recs, Payload::JsonGzipBase64);
    assert_eq!((kept.len(), refused.len()), (4, 0), "JSON carries it");
}

fn envelope(ns: &str, body: &str) -> Vec<u8> {
    format!(
        "<?xml version=\"1.0\"?><s:Envelope xmlns:s=\"{ns}\"><s:Body>{body}</s:Body></s:Envelope>"
    )
    .into_bytes()
}

#[test]
fn answers_and_faults_mean_what_the_http_exchanges_do() {
    let r = cfg().results;
    let ok = envelope(
        xml::SOAP11,
        "<ns2:pushDataResponse xmlns:ns2=\"urn:x\"><ns2:code>0</ns2:code><ns2:rejected>\
         <ns2:record><ns2:index>2</ns2:index><ns2:code>E01</ns2:code>\
         <ns2:message>统一社会信用代码 &lt;错误&gt;</ns2:message></ns2:record>\
         </ns2:rejected></ns2:pushDataResponse>",
    );
    assert_eq!(
        classify(200, &ok, &r),
        Answer::Accepted(vec![Rejected {
            index: 2,
            code: Some("E01".into()),
            message: "统一社会信用代码 <错误>".into()
        }])
    );
    let refused = envelope(
        xml::SOAP11,
        "<pushDataResponse><code>7</code><message>schema</message></pushDataResponse>",
    );
    assert_eq!(
        classify(200, &refused, &r),
        Answer::Refused {
            code: "7".into(),
            message: "schema".into()
        }
    );
    let client = envelope(
        xml::SOAP11,
        "<s:Fault><faultcode>s:Client</faultcode><faultstring>bad record</faultstring></s:Fault>",
    );
    assert_eq!(
        classify(500, &client, &r),
        Answer::Refused {
            code: "s:Client".into(),
            message: "bad record".into()
        }
    );
    let server = envelope(
        xml::SOAP11,
        "<s:Fault><faultcode>s:Server</faultcode><faultstring>db down</faultstring></s:Fault>",
    );
    assert!(matches!(classify(500, &server, &r), Answer::Retry { .. }));
    let sender = envelope(
        xml::SOAP12,
        "<s:Fault><s:Code><s:Value>s:Sender</s:Value></s:Code><s:Reason><s:Text>no</s:Text>\
         </s:Reason></s:Fault>",
    );
    assert!(matches!(classify(500, &sender, &r), Answer::Refused { .. }));
    let auth = envelope(
        xml::SOAP12,
        "<s:Fault><s:Code><s:Value>s:Sender</s:Value></s:Code></s:Fault>",
    );
    assert_eq!(
        classify(401, &auth, &r),
        Answer::Credentials { status: 401 }
    );
    let receiver = envelope(
        xml::SOAP12,
        "<s:Fault><s:Code><s:Value>s:Receiver</s:Value></s:Code></s:Fault>",
    );
    assert!(matches!(classify(500, &receiver, &r), Answer::Retry { .. }));
    assert!(matches!(classify(503, b"down", &r), Answer::Retry { .. }));
    assert!(matches!(classify(200, b"<html>", &r), Answer::Retry { .. }));
    assert!(matches!(classify(404, b"", &r), Answer::Fatal(_)));
    assert!(matches!(
        classify(200, &envelope(xml::SOAP11, "<other/>"), &r),
        Answer::Fatal(_)
    ));
}

#[test]
fn a_provinces_own_result_path_and_success_value() {
    let mut r = cfg().results;
    r.result = vec![
        "pushDataResponse".into(),
        "return".into(),
        "resultCode".into(),
    ];
    r.success = "00".into();
    let ok = envelope(
        xml::SOAP11,
        "<pushDataResponse><return><resultCode>00</resultCode></return></pushDataResponse>",
    );
    assert_eq!(classify(200, &ok, &r), Answer::Accepted(Vec::new()));
    let no = envelope(
        xml::SOAP11,
        "<pushDataResponse><return><resultCode>0</resultCode></return></pushDataResponse>",
    );
    assert!(matches!(classify(200, &no, &r), Answer::Refused { .. }));
}

#[test]
fn the_reader_resolves_references_cdata_and_nil() {
    let doc = parse(
        "<a xmlns:x=\"u\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\">\
         <x:b>&#x4E2D;&#25991; &amp;&quot;</x:b><c><![CDATA[<raw> & ]]></c><d xsi:nil=\"true\"/></a>"
            .as_bytes(),
    )
    .expect("parse");
    assert_eq!(doc.text_of("b"), Some("中文 &\""));
    assert_eq!(doc.text_of("c"), Some("<raw> & "));
    assert!(doc.child("d").expect("d").nil);
    assert!(parse(b"<a><b></a>").is_err());
    assert!(parse(b"<a>&unknown;</a>").is_err());
}
