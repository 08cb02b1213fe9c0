//! What a WebService's answer means, in the HTTP exchange's terms ([`Answer`]): a result
//! code of success with the per-record failures, a result code refusing the request, or a
//! SOAP fault — the sender's (`Client`, `Sender`: the request is refused as data) or the
//! receiver's (`Server`, `Receiver`: tried again later).

use crate::config::soap::Results;
use crate::sink::http::answer::{Answer, Rejected};

use super::tree::{self, Node};

/// The meaning of an answer with this HTTP status and body.
pub fn classify(status: u16, body: &[u8], r: &Results) -> Answer {
    let doc = tree::parse(body).ok();
    let soap_body = doc.as_ref().and_then(Node::body);
    if let Some(fault) = soap_body.and_then(|b| b.child("Fault")) {
        return fault_answer(fault, status);
    }
    match status {
        200..=299 => match soap_body {
            Some(b) => verdicts(b, r, body),
            // A garbled answer may have followed a request that was taken; sending it
            // again is safe (the batch id makes it idempotent).
            None => Answer::Retry {
                after: None,
                why: format!("an answer that is not a SOAP envelope{}", excerpt(body)),
            },
        },
        401 | 403 => Answer::Credentials { status },
        413 => Answer::TooLarge,
        408 | 429 | 500..=599 => Answer::Retry {
            after: None,
            why: format!("HTTP {status}{}", excerpt(body)),
        },
        _ => Answer::Fatal(format!("HTTP {status}{}", excerpt(body))),
    }
}

/// A fault of SOAP 1.1 (`faultcode`, `faultstring`) or 1.2 (`Code/Value`, `Reason/Text`).
fn fault_answer(f: &Node, status: u16) -> Answer {
    let code = f
        .text_of("faultcode")
        .or_else(|| f.child("Code").and_then(|c| c.text_of("Value")))
        .unwrap_or_default()
        .trim()
        .to_owned();
    let message = f
        .text_of("faultstring")
        .or_else(|| f.child("Reason").and_then(|r| r.text_of("Text")))
        .unwrap_or_default()
        .trim()
        .to_owned();
    // `soap:Client.Auth` is a Client fault; the part after the prefix decides.
    let local = code.rsplit(':').next().unwrap_or_default();
    let class = local.split('.').next().unwrap_or_default();
    match class {
        "Client" | "Sender" if matches!(status, 401 | 403) => Answer::Credentials { status },
        "Client" | "Sender" => Answer::Refused { code, message },
        "Server" | "Receiver" => Answer::Retry {
            after: None,
            why: format!("SOAP fault {code}: {message}"),
        },
        _ => Answer::Fatal(format!("SOAP fault {code}: {message}")),
    }
}

fn verdicts(b: &Node, r: &Results, raw: &[u8]) -> Answer {
    let Some(code) = b.at(&r.result) else {
        return Answer::Fatal(format!(
            "an answer without a result at {}{}",
            r.result.join("/"),
            excerpt(raw)
        ));
    };
    let code = code.text.trim().to_owned();
    if code != r.success {
        let message = b
            .at(&r.message)
            .map(|m| m.text.trim().to_owned())
            .unwrap_or_default();
        return Answer::Refused { code, message };
    }
    let mut rejected = Vec::new();
    for f in b.all(&r.rejected) {
        let Some(index) = f.text_of("index").and_then(|i| i.trim().parse().ok()) else {
            return Answer::Fatal(format!(
                "a rejected record without an index in the answer{}",
                excerpt(raw)
            ));
        };
        rejected.push(Rejected {
            index,
            code: f
                .text_of("code")
                .map(|c| c.trim().to_owned())
                .filter(|c| !c.is_empty()),
            message: f.text_of("message").unwrap_or_default().trim().to_owned(),
        });
    }
    Answer::Accepted(rejected)
}

/// The beginning of a body, for a message.
fn excerpt(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(body);
    let s = s.trim();
    if s.is_empty() {
        return String::new();
    }
    let cut: String = s.chars().take(200).collect();
    format!(": {cut}")
}
