//! How a request proves who sends it: the headers of each auth kind, and the login token
//! kept and renewed before it expires.

use std::time::{Duration, Instant};

use base64::Engine as _;
use hmac::{KeyInit, Mac};
use sha2::Digest;

use crate::config::http::{AuthKind, HttpAuth, Login};

/// Lowercase hex SHA-256 (or SM3) of `bytes`.
pub fn digest_hex(kind: AuthKind, bytes: &[u8]) -> String {
    match kind {
        AuthKind::HmacSm3 => hex::encode(sm3::Sm3::digest(bytes)),
        _ => hex::encode(sha2::Sha256::digest(bytes)),
    }
}

/// The text an HMAC signs: the method, the URL path without the query, the timestamp, the
/// nonce and the hex digest of the body, joined by single newlines.
pub fn string_to_sign(
    kind: AuthKind,
    method: &str,
    path: &str,
    ts: &str,
    nonce: &str,
    body: &[u8],
) -> String {
    format!(
        "{method}\n{path}\n{ts}\n{nonce}\n{}",
        digest_hex(kind, body)
    )
}

/// Lowercase hex HMAC of `text` keyed by `secret`, with SHA-256 or SM3. HMAC takes keys of
/// every length, so the key is never refused; were it, the signature would be empty and
/// the exchange would refuse the request (no panic in the daemon).
pub fn hmac_hex(kind: AuthKind, secret: &[u8], text: &str) -> String {
    match kind {
        AuthKind::HmacSm3 => <hmac::Hmac<sm3::Sm3> as KeyInit>::new_from_slice(secret)
            .map(|mut m| {
                m.update(text.as_bytes());
                hex::encode(m.finalize().into_bytes())
            })
            .unwrap_or_default(),
        _ => <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret)
            .map(|mut m| {
                m.update(text.as_bytes());
                hex::encode(m.finalize().into_bytes())
            })
            .unwrap_or_default(),
    }
}

/// The headers of one request, the login token aside.
pub fn headers(
    auth: &HttpAuth,
    method: &str,
    path: &str,
    body: &[u8],
    now_ms: i64,
    nonce: &str,
) -> Vec<(&'static str, String)> {
    let key = auth.app_key.as_ref().map_or("", |k| k.expose());
    let secret = auth.app_secret.as_ref().map_or("", |s| s.expose());
    let ts = now_ms.to_string();
    match auth.kind {
        AuthKind::None | AuthKind::Login => Vec::new(),
        AuthKind::Basic => vec![(
            "Authorization",
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{key}:{secret}"))
            ),
        )],
        AuthKind::Bearer => vec![("Authorization", format!("Bearer {secret}"))],
        AuthKind::Md5 | AuthKind::Sha1 => {
            let text = format!("{key}{secret}{ts}");
            let sign = if auth.kind == AuthKind::Md5 {
                hex::encode(md5::Md5::digest(text.as_bytes()))
            } else {
                hex::encode(sha1::Sha1::digest(text.as_bytes()))
            };
            vec![
                ("X-App-Key", key.to_owned()),
                ("X-Timestamp", ts),
                ("X-Sign", sign),
            ]
        }
        AuthKind::HmacSha256 | AuthKind::HmacSm3 => {
            let text = string_to_sign(auth.kind, method, path, &ts, nonce, body);
            vec![
                ("X-App-Key", key.to_owned()),
                ("X-Timestamp", ts),
                ("X-Nonce", nonce.to_owned()),
                ("X-Signature", hmac_hex(auth.kind, secret.as_bytes(), &text)),
            ]
        }
    }
}

/// A random nonce: 16 bytes as hex.
pub fn nonce() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// A login token and when it should be renewed.
#[derive(Clone)]
pub struct Token {
    pub value: String,
    pub renew_at: Instant,
}

/// When a token that lives `ttl` should be renewed: at four fifths of its life, so that a
/// request never leaves with a token about to expire.
pub fn renew_at(now: Instant, ttl: Duration) -> Instant {
    now + ttl.mul_f64(0.8)
}

/// The token and its lifetime from a login answer.
pub fn token_of(login: &Login, answer: &serde_json::Value) -> Option<(String, Duration)> {
    let token = match answer.pointer(&login.token_pointer)? {
        serde_json::Value::String(s) if !s.is_empty() => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let ttl = answer
        .pointer(&login.expires_pointer)
        .and_then(|v| {
            v.as_f64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        })
        .filter(|s| *s > 0.0)
        .map_or(login.ttl, Duration::from_secs_f64);
    Some((token, ttl))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn auth(kind: AuthKind) -> HttpAuth {
        HttpAuth {
            kind,
            app_key: Some(Secret::new("k1".into())),
            app_secret: Some(Secret::new("s3cret".into())),
            login: None,
        }
    }

    #[test]
    fn hmac_signs_the_five_parts() {
        let body = br#"{"a":1}"#;
        let text = string_to_sign(
            AuthKind::HmacSha256,
            "POST",
            "/x/t",
            "1700000000000",
            "ab",
            body,
        );
        assert_eq!(
            text,
            format!(
                "POST\n/x/t\n1700000000000\nab\n{}",
                hex::encode(sha2::Sha256::digest(body))
            )
        );
        let h = headers(
            &auth(AuthKind::HmacSha256),
            "POST",
            "/x/t",
            body,
            1_700_000_000_000,
            "ab",
        );
        let sig = &h
            .iter()
            .find(|(n, _)| *n == "X-Signature")
            .expect("signature")
            .1;
        assert_eq!(*sig, hmac_hex(AuthKind::HmacSha256, b"s3cret", &text));
        // RFC 4231 test case 2, to be sure the HMAC is the standard one.
        assert_eq!(
            hmac_hex(
                AuthKind::HmacSha256,
                b"Jefe",
                "what do ya want for nothing?"
            ),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // SM3 of "abc" (GB/T 32905-2016, example 1).
        assert_eq!(
            digest_hex(AuthKind::HmacSm3, b"abc"),
            "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
        );
        let sm3 = headers(&auth(AuthKind::HmacSm3), "POST", "/x/t", body, 1, "ab");
        assert_ne!(sm3[3].1, h[3].1);
        assert_eq!(sm3[3].1.len(), 64);
    }

    #[test]
    fn md5_and_sha1_sign_key_secret_and_time() {
        let h = headers(&auth(AuthKind::Md5), "POST", "/", b"", 5, "n");
        assert_eq!(h[2].1, hex::encode(md5::Md5::digest(b"k1s3cret5")));
        let h = headers(&auth(AuthKind::Sha1), "POST", "/", b"", 5, "n");
        assert_eq!(h[2].1, hex::encode(sha1::Sha1::digest(b"k1s3cret5")));
        let h = headers(&auth(AuthKind::Basic), "POST", "/", b"", 5, "n");
        assert_eq!(h[0].1, "Basic azE6czNjcmV0");
    }

    #[test]
    fn a_login_answer_gives_token_and_lifetime() {
        let login = Login {
            url: String::new(),
            key_field: "app_key".into(),
            secret_field: "app_secret".into(),
            token_pointer: "/data/session".into(),
            expires_pointer: "/data/ttl".into(),
            ttl: Duration::from_secs(60),
            header: "Authorization".into(),
            prefix: "Bearer ".into(),
        };
        let a = serde_json::json!({"data": {"session": "abc", "ttl": 30}});
        assert_eq!(
            token_of(&login, &a),
            Some(("abc".into(), Duration::from_secs(30)))
        );
        let a = serde_json::json!({"data": {"session": "abc"}});
        assert_eq!(
            token_of(&login, &a),
            Some(("abc".into(), Duration::from_secs(60)))
        );
        assert_eq!(token_of(&login, &serde_json::json!({})), None);
    }
}
