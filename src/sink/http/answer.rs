//! What an answer to a posted batch means: accepted (with the records the province
//! rejected), refused whole, to be tried again later, credentials refused, or a problem
//! that needs a person.

use std::time::Duration;

use crate::config::http::Envelope;

/// One record the province rejected: its index in the request, its code and words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    pub index: usize,
    pub code: Option<String>,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Every record not listed was taken.
    Accepted(Vec<Rejected>),
    /// Nothing was taken: the platform refused the request as data.
    Refused { code: String, message: String },
    /// The exchange is busy or down: the batch is sent again later (after `after`, where
    /// it said).
    Retry {
        after: Option<Duration>,
        why: String,
    },
    /// 401 or 403.
    Credentials { status: u16 },
    /// 413: the request is larger than the exchange takes; a smaller one may pass.
    TooLarge,
    /// Anything else: needs a person.
    Fatal(String),
}

/// Longest wait a `Retry-After` is honoured for; a longer one is cut to it (the table
/// still retries, and says so in `status`).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// The meaning of an answer with this status, `Retry-After` header and body.
pub fn classify(status: u16, retry_after: Option<&str>, body: &[u8], env: &Envelope) -> Answer {
    match status {
        200..=299 => verdicts(body, env),
        401 | 403 => Answer::Credentials { status },
        413 => Answer::TooLarge,
        429 => Answer::Retry {
            after: Some(
                retry_after
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .map_or(Duration::from_secs(1), Duration::from_secs)
                    .min(MAX_RETRY_AFTER),
            ),
            why: "HTTP 429 (too many requests)".into(),
        },
        408 | 500..=599 => Answer::Retry {
            after: None,
            why: format!("HTTP {status}{}", excerpt(body)),
        },
        _ => Answer::Fatal(format!("HTTP {status}{}", excerpt(body))),
    }
}

/// The answer's verdicts: the built-in envelope's `{"code": 0, "rejected": [{"index",
/// "code", "message"}]}`, or the same at the envelope's pointers.
fn verdicts(body: &[u8], env: &Envelope) -> Answer {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        // A garbled answer may have followed a batch that was taken; sending it again is
        // safe (the batch id makes it idempotent).
        return Answer::Retry {
            after: None,
            why: format!("an answer that is not JSON{}", excerpt(body)),
        };
    };
    let code = match v.pointer(&env.success) {
        Some(serde_json::Value::Number(n)) => n.to_string(),
        Some(serde_json::Value::String(s)) => s.clone(),
        _ => return Answer::Fatal(format!("an answer without a code{}", excerpt(body))),
    };
    let text = |v: Option<&serde_json::Value>| match v {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    if code != env.success_value {
        return Answer::Refused {
            code,
            message: text(v.pointer(&env.message).or(v.get("msg"))).unwrap_or_default(),
        };
    }
    let mut rejected = Vec::new();
    for r in v
        .pointer(&env.rejected)
        .and_then(|r| r.as_array())
        .into_iter()
        .flatten()
    {
        let Some(index) = r.get("index").and_then(serde_json::Value::as_u64) else {
            return Answer::Fatal(format!(
                "a rejected record without an index in the answer{}",
                excerpt(body)
            ));
        };
        rejected.push(Rejected {
            index: index as usize,
            code: text(r.get("code")),
            message: text(r.get("message")).unwrap_or_default(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(status: u16, retry_after: Option<&str>, body: &[u8]) -> Answer {
        super::classify(status, retry_after, body, &Envelope::built_in())
    }

    #[test]
    fn a_provinces_own_success_code_is_read_where_it_says() {
        let mut env = Envelope::built_in();
        env.success = "/error_code".into();
        env.success_value = "00".into();
        assert_eq!(
            super::classify(200, None, br#"{"error_code":"00"}"#, &env),
            Answer::Accepted(Vec::new())
        );
        assert_eq!(
            super::classify(200, None, br#"{"error_code":"01","message":"sai"}"#, &env),
            Answer::Refused {
                code: "01".into(),
                message: "sai".into()
            }
        );
    }

    #[test]
    fn answers_are_sorted_by_what_they_mean() {
        assert_eq!(
            classify(200, None, br#"{"code":0}"#),
            Answer::Accepted(Vec::new())
        );
        assert_eq!(
            classify(
                200,
                None,
                br#"{"code":"0","rejected":[{"index":2,"code":"E01","message":"bad uscc"}]}"#
            ),
            Answer::Accepted(vec![Rejected {
                index: 2,
                code: Some("E01".into()),
                message: "bad uscc".into()
            }])
        );
        assert_eq!(
            classify(200, None, br#"{"code":7,"message":"schema"}"#),
            Answer::Refused {
                code: "7".into(),
                message: "schema".into()
            }
        );
        assert_eq!(
            classify(429, Some("3"), b""),
            Answer::Retry {
                after: Some(Duration::from_secs(3)),
                why: "HTTP 429 (too many requests)".into()
            }
        );
        assert!(matches!(
            classify(503, None, b"down"),
            Answer::Retry { after: None, .. }
        ));
        assert!(matches!(
            classify(200, None, b"<html>"),
            Answer::Retry { .. }
        ));
        assert_eq!(
            classify(401, None, b""),
            Answer::Credentials { status: 401 }
        );
        assert!(matches!(classify(404, None, b""), Answer::Fatal(_)));
        assert!(matches!(classify(200, None, b"{}"), Answer::Fatal(_)));
    }
}
