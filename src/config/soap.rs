//! Validation of a `soap` exchange: the transport (endpoint, TLS, auth) is the HTTP
//! exchange's; `[exchange.soap]` says the SOAP version, the namespace and operation, how the
//! batch travels (XML elements, or a JSON/CSV payload GZIP+Base64 in one element), the
//! element names, and where the answer holds its result.

use super::http::HttpExchange;
use super::schema::{RawExchange, RawSoap};
use super::validate::V;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SoapVersion {
    V11,
    V12,
}

/// How the records travel in the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Payload {
    Xml,
    JsonGzipBase64,
    CsvGzipBase64,
}

/// Element names of the request.
#[derive(Clone, Debug)]
pub struct Names {
    pub agent: Option<String>,
    pub table: Option<String>,
    pub batch: Option<String>,
    pub cd_batch: Option<String>,
    pub header_batch: Option<String>,
    pub token: Option<String>,
    pub records: String,
    pub record: String,
    pub op: String,
    pub key: String,
    pub values: String,
    pub payload: String,
}

impl Default for Names {
    fn default() -> Names {
        Names {
            agent: Some("agent".into()),
            table: Some("table".into()),
            batch: Some("batch".into()),
            cd_batch: Some("cd_batch".into()),
            header_batch: Some("BatchId".into()),
            token: None,
            records: "records".into(),
            record: "record".into(),
            op: "op".into(),
            key: "key".into(),
            values: "values".into(),
            payload: "payload".into(),
        }
    }
}

/// Where the answer holds its verdict.
#[derive(Clone, Debug)]
pub struct Results {
    pub result: Vec<String>,
    pub success: String,
    pub message: Vec<String>,
    pub rejected: Vec<String>,
}

/// An exchange reached as a WebService.
#[derive(Clone, Debug)]
pub struct SoapExchange {
    /// Endpoint, timeout, TLS, `max_records` and auth, as for `http`.
    pub http: HttpExchange,
    pub version: SoapVersion,
    pub namespace: String,
    pub operation: String,
    /// `None`: no action is sent.
    pub action: Option<String>,
    pub payload: Payload,
    pub qualified: bool,
    /// NULL leaves the element out instead of `xsi:nil`.
    pub null_absent: bool,
    pub names: Names,
    pub results: Results,
}

impl SoapExchange {
    /// A configuration with every default, for tests.
    pub fn with_defaults(http: HttpExchange, namespace: &str, operation: &str) -> SoapExchange {
        let path = |rest: &str| {
            format!("{operation}Response/{rest}")
                .split('/')
                .map(str::to_owned)
                .collect()
        };
        SoapExchange {
            http,
            version: SoapVersion::V11,
            namespace: namespace.into(),
            operation: operation.into(),
            action: Some(default_action(namespace, operation)),
            payload: Payload::Xml,
            qualified: true,
            null_absent: false,
            names: Names::default(),
            results: Results {
                result: path("code"),
                success: "0".into(),
                message: path("message"),
                rejected: path("rejected/record"),
            },
        }
    }
}

fn default_action(namespace: &str, operation: &str) -> String {
    format!("{}/{operation}", namespace.trim_end_matches('/'))
}

/// Whether `s` is an XML element name without a prefix.
pub fn xml_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

impl V<'_> {
    /// The `soap` keys of `[exchange]` and `[exchange.soap]`; `None` after a problem.
    pub(super) fn soap_exchange(&mut self, e: &RawExchange) -> Option<SoapExchange> {
        let before = self.problems.len();
        for (key, set) in [
            ("gzip", e.gzip.is_some()),
            ("envelope", e.envelope.is_some()),
        ] {
            if set {
                self.err(
                    format!("exchange.{key}"),
                    "applies to kind = \"http\", not to kind = \"soap\" (see [exchange.soap])",
                );
            }
        }
        let http = self.http_exchange(e, "soap");
        let Some(s) = e.soap.as_ref() else {
            self.err(
                "exchange.soap",
                "kind = \"soap\" needs [exchange.soap] with at least namespace and operation",
            );
            return None;
        };
        let version = match s.version.as_deref() {
            None | Some("1.1") => SoapVersion::V11,
            Some("1.2") => SoapVersion::V12,
            Some(v) => {
                self.err(
                    "exchange.soap.version",
                    format!("`{v}` is not a SOAP version: use \"1.1\" or \"1.2\""),
                );
                SoapVersion::V11
            }
        };
        let namespace = s.namespace.clone().unwrap_or_else(|| {
            self.err(
                "exchange.soap.namespace",
                "is required: the namespace of the operation (e.g. http://exchange.example.gov.cn/ws)",
            );
            String::new()
        });
        let operation = s.operation.clone().unwrap_or_else(|| {
            self.err(
                "exchange.soap.operation",
                "is required: the operation's element name (e.g. pushData)",
            );
            String::new()
        });
        if s.operation.is_some() && !xml_name(&operation) {
            self.err(
                "exchange.soap.operation",
                format!("`{operation}` is not an XML element name"),
            );
        }
        let payload = match s.payload.as_deref() {
            None | Some("xml") => Payload::Xml,
            Some("json-gzip-base64") => Payload::JsonGzipBase64,
            Some("csv-gzip-base64") => Payload::CsvGzipBase64,
            Some(p) => {
                self.err(
                    "exchange.soap.payload",
                    format!("`{p}` is not a payload: use xml, json-gzip-base64 or csv-gzip-base64"),
                );
                Payload::Xml
            }
        };
        let qualified = self.choice("elements", &s.elements, "qualified", "unqualified");
        let null_absent = !self.choice("null", &s.null, "nil", "absent");
        let names = self.names(s);
        let results = self.results(s, &operation);
        let action = match &s.action {
            Some(a) if a.is_empty() => None,
            Some(a) => Some(a.clone()),
            None => Some(default_action(&namespace, &operation)),
        };
        (self.problems.len() == before).then_some(SoapExchange {
            http: http?,
            version,
            namespace,
            operation,
            action,
            payload,
            qualified,
            null_absent,
            names,
            results,
        })
    }

    /// One of two words (`true` for the first, the default).
    fn choice(&mut self, key: &str, v: &Option<String>, first: &str, second: &str) -> bool {
        match v.as_deref() {
            None => true,
            Some(x) if x == first => true,
            Some(x) if x == second => false,
            Some(x) => {
                self.err(
                    format!("exchange.soap.{key}"),
                    format!("`{x}` is not `{first}` or `{second}`"),
                );
                true
            }
        }
    }

    fn names(&mut self, s: &RawSoap) -> Names {
        let d = Names::default();
        let mut name = |key: &str, v: &Option<String>, default: Option<&str>, optional: bool| {
            let n = v.clone().or_else(|| default.map(str::to_owned));
            match n {
                Some(n) if n.is_empty() && optional => None,
                Some(n) if xml_name(&n) => Some(n),
                Some(n) => {
                    self.err(
                        format!("exchange.soap.{key}"),
                        format!("`{n}` is not an XML element name"),
                    );
                    Some(n)
                }
                None => None,
            }
        };
        let mut required = |key: &str, v: &Option<String>, default: &str| {
            name(key, v, Some(default), false).unwrap_or_default()
        };
        let records = required("records_element", &s.records_element, &d.records);
        let record = required("record_element", &s.record_element, &d.record);
        let op = required("op_element", &s.op_element, &d.op);
        let key = required("key_element", &s.key_element, &d.key);
        let values = required("values_element", &s.values_element, &d.values);
        let payload = required("payload_element", &s.payload_element, &d.payload);
        Names {
            agent: name("agent_element", &s.agent_element, d.agent.as_deref(), true),
            table: name("table_element", &s.table_element, d.table.as_deref(), true),
            batch: name("batch_element", &s.batch_element, d.batch.as_deref(), true),
            cd_batch: name(
                "cd_batch_element",
                &s.cd_batch_element,
                d.cd_batch.as_deref(),
                true,
            ),
            header_batch: name(
                "header_batch_element",
                &s.header_batch_element,
                d.header_batch.as_deref(),
                true,
            ),
            token: name("token_element", &s.token_element, None, true),
            records,
            record,
            op,
            key,
            values,
            payload,
        }
    }

    fn results(&mut self, s: &RawSoap, operation: &str) -> Results {
        let mut path = |key: &str, v: &Option<String>, rest: &str| {
            let p = v
                .clone()
                .unwrap_or_else(|| format!("{operation}Response/{rest}"));
            let parts: Vec<String> = p.split('/').map(str::to_owned).collect();
            if v.is_some() && !parts.iter().all(|n| xml_name(n)) {
                self.err(
                    format!("exchange.soap.{key}"),
                    format!(
                        "`{p}` is not a path of element names below the SOAP body \
                         (e.g. pushDataResponse/return/code)"
                    ),
                );
            }
            parts
        };
        Results {
            result: path("result_path", &s.result_path, "code"),
            message: path("message_path", &s.message_path, "message"),
            rejected: path("rejected_path", &s.rejected_path, "rejected/record"),
            success: s.success.clone().unwrap_or_else(|| "0".into()),
        }
    }
}
