//! What a shared server exposes: the metrics endpoint (a bearer token for `/metrics`) and
//! the configuration file (readable by others while it holds a secret inline). `check`
//! warns about both.

use std::os::unix::fs::PermissionsExt;

use axum::http::HeaderMap;

use crate::config::Config;
use crate::secret::Secret;

/// Whether a request may read `/metrics`: always without a token, else with
/// `Authorization: Bearer <token>` (compared in constant time).
pub fn allowed(token: Option<&Secret>, headers: &HeaderMap) -> bool {
    let Some(token) = token else { return true };
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let (a, b) = (given.as_bytes(), token.expose().as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `check`'s warnings about what others on the machine or the network could read.
pub fn warnings(cfg: &Config) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(addr) = cfg.agent.metrics
        && !addr.ip().is_loopback()
        && cfg.agent.metrics_token.is_none()
    {
        out.push(format!(
            "agent.metrics listens on {addr}, beyond this machine, and /metrics asks for no \
             token: set agent.metrics_token (\"${{file:...}}\") or listen on 127.0.0.1"
        ));
    }
    let readable = std::fs::metadata(&cfg.file).is_ok_and(|m| m.permissions().mode() & 0o044 != 0);
    if readable {
        let text = std::fs::read_to_string(&cfg.file).unwrap_or_default();
        if cfg
            .secrets()
            .iter()
            .any(|s| !s.is_empty() && text.contains(s.as_str()))
        {
            out.push(format!(
                "{} holds a secret inline and other users can read it: `chmod 600` it (or \
                 `chmod 640` with the agent's group), or move the secret to \"${{file:...}}\"",
                cfg.file.display()
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_right_bearer_token_passes() {
        let token = Secret::new("s3cret-token".into());
        let mut h = HeaderMap::new();
        assert!(allowed(None, &h));
        assert!(!allowed(Some(&token), &h));
        h.insert("authorization", "Bearer s3cret-tokeN".parse().expect("h"));
        assert!(!allowed(Some(&token), &h));
        h.insert("authorization", "s3cret-token".parse().expect("h"));
        assert!(!allowed(Some(&token), &h));
        h.insert("authorization", "Bearer s3cret-token".parse().expect("h"));
        assert!(allowed(Some(&token), &h));
    }
}
