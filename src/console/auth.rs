//! Who is asking: a signed-in session (a cookie, with a CSRF token its forms carry) or a
//! script's `Authorization: Bearer <token>`; passwords checked against argon2 hashes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use axum::http::header::{AUTHORIZATION, COOKIE};

use crate::config::{ConsoleRole, ConsoleUser};
use crate::secret::Secret;

pub const SESSION_COOKIE: &str = "frontdb_session";
pub const LOGIN_COOKIE: &str = "frontdb_login";
pub const LANG_COOKIE: &str = "frontdb_lang";

/// A signed-in browser.
struct Session {
    user: String,
    csrf: String,
    last: Instant,
}

/// The sessions of this process. They outlive a configuration reload (a user removed or
/// demoted by it is looked up again on every request) and end with the process.
static SESSIONS: Mutex<Option<HashMap<String, Session>>> = Mutex::new(None);

fn sessions<R>(f: impl FnOnce(&mut HashMap<String, Session>) -> R) -> R {
    let mut g = SESSIONS.lock().unwrap_or_else(|e| e.into_inner());
    f(g.get_or_insert_with(HashMap::new))
}

/// A fresh random token (256 bits, hex).
pub fn random_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// Byte strings compared in time that does not depend on where they differ.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// How a request was authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Via {
    /// A browser session, whose forms must carry this CSRF token.
    Session { csrf: String },
    /// A bearer token: no cookie is involved, so no forgery across sites is possible.
    Bearer,
}

/// The user behind a request.
#[derive(Clone, Debug)]
pub struct Signed {
    pub name: String,
    pub role: ConsoleRole,
    pub via: Via,
}

impl Signed {
    /// How the audit trail names the user.
    pub fn who(&self) -> String {
        format!("{} (console)", self.name)
    }

    pub fn csrf(&self) -> &str {
        match &self.via {
            Via::Session { csrf } => csrf,
            Via::Bearer => "",
        }
    }

    /// Whether a state-changing request carries what it must: a session's CSRF token (a
    /// bearer-authenticated request needs none).
    pub fn form_ok(&self, given: Option<&str>) -> bool {
        match &self.via {
            Via::Session { csrf } => given.is_some_and(|g| same(g.as_bytes(), csrf.as_bytes())),
            Via::Bearer => true,
        }
    }
}

/// A cookie of the request.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The user of a request, if it is signed in (a live session) or carries a known token.
pub fn signed(headers: &HeaderMap, users: &[ConsoleUser], idle: Duration) -> Option<Signed> {
    let find = |name: &str| users.iter().find(|u| u.name == name);
    if let Some(bearer) = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        let u = users.iter().find(|u| {
            u.token
                .as_ref()
                .is_some_and(|t| same(t.expose().as_bytes(), bearer.trim().as_bytes()))
        })?;
        return Some(Signed {
            name: u.name.clone(),
            role: u.role,
            via: Via::Bearer,
        });
    }
    let id = cookie(headers, SESSION_COOKIE)?;
    sessions(|all| {
        let s = all.get_mut(id)?;
        if s.last.elapsed() > idle {
            all.remove(id);
            return None;
        }
        let Some(u) = find(&s.user) else {
            all.remove(id);
            return None;
        };
        s.last = Instant::now();
        Some(Signed {
            name: u.name.clone(),
            role: u.role,
            via: Via::Session {
                csrf: s.csrf.clone(),
            },
        })
    })
}

/// Start a session for `user`; the cookie's value.
pub fn open(user: &str, idle: Duration) -> String {
    let id = random_token();
    sessions(|all| {
        // Sessions nobody came back to are forgotten as new ones start.
        all.retain(|_, s| s.last.elapsed() <= idle);
        all.insert(
            id.clone(),
            Session {
                user: user.to_owned(),
                csrf: random_token(),
                last: Instant::now(),
            },
        );
    });
    id
}

/// End the session of a request.
pub fn close(headers: &HeaderMap) {
    if let Some(id) = cookie(headers, SESSION_COOKIE) {
        sessions(|all| all.remove(id));
    }
}

/// Whether `password` is the user's: its argon2 hash, or its token. Argon2 is slow on
/// purpose; it runs off the async threads.
pub async fn check_password(user: &ConsoleUser, password: &str) -> bool {
    if let Some(t) = &user.token
        && same(t.expose().as_bytes(), password.as_bytes())
    {
        return true;
    }
    let Some(hash) = user.password_hash.clone() else {
        return false;
    };
    let password = Secret::new(password.to_owned());
    tokio::task::spawn_blocking(move || verify(&hash, password.expose()))
        .await
        .unwrap_or(false)
}

fn verify(hash: &str, password: &str) -> bool {
    use argon2::PasswordVerifier;
    argon2::Argon2::default()
        .verify_password(password.as_bytes(), hash)
        .is_ok()
}

/// A `Set-Cookie` value: HTTP-only, same-site strict, for the whole console.
pub fn set_cookie(name: &str, value: &str, max_age: Option<Duration>) -> String {
    let age = max_age.map_or(String::new(), |d| format!("; Max-Age={}", d.as_secs()));
    format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict{age}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(token: Option<&str>) -> ConsoleUser {
        ConsoleUser {
            name: "li".into(),
            password_hash: None,
            token: token.map(|t| Secret::new(t.into())),
            role: ConsoleRole::Viewer,
        }
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(COOKIE, "a=1; frontdb_session=xyz; b=2".parse().unwrap());
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("xyz"));
        assert_eq!(cookie(&h, "c"), None);
    }

    #[test]
    fn a_session_expires_when_idle_and_its_form_needs_the_token() {
        let users = [user(None)];
        let id = open("li", Duration::from_secs(60));
        let mut h = HeaderMap::new();
        h.insert(COOKIE, format!("{SESSION_COOKIE}={id}").parse().unwrap());
        let s = signed(&h, &users, Duration::from_secs(60)).expect("signed in");
        assert!(s.form_ok(Some(s.csrf())));
        assert!(!s.form_ok(None));
        assert!(!s.form_ok(Some("forged")));
        // Idle longer than allowed: gone, and gone for good.
        assert!(signed(&h, &users, Duration::ZERO).is_none());
        assert!(signed(&h, &users, Duration::from_secs(60)).is_none());
    }

    #[test]
    fn a_bearer_token_names_its_user() {
        let users = [user(Some("0123456789abcdef"))];
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, "Bearer 0123456789abcdef".parse().unwrap());
        let s = signed(&h, &users, Duration::from_secs(1)).expect("bearer");
        assert_eq!(s.via, Via::Bearer);
        h.insert(AUTHORIZATION, "Bearer 0123456789abcdeX".parse().unwrap());
        assert!(signed(&h, &users, Duration::from_secs(1)).is_none());
    }

    #[test]
    fn argon2_hashes_are_checked() {
        use argon2::PasswordHasher;
        let hash = argon2::Argon2::default()
            .hash_password_with_salt(b"secret pw", b"saltsaltsalt")
            .unwrap()
            .to_string();
        assert!(verify(&hash, "secret pw"));
        assert!(!verify(&hash, "secret px"));
    }
}
