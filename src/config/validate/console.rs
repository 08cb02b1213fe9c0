//! `[agent] console` and its users: where the web console listens, how long a session lasts,
//! who may sign in and what each may do.

use super::*;
use crate::config::{ConsoleRole, ConsoleUser};

impl V<'_> {
    /// The console's address, session length and users (taken out of `a`).
    pub(super) fn console(
        &mut self,
        a: &mut RawAgent,
    ) -> (Option<std::net::SocketAddr>, Duration, Vec<ConsoleUser>) {
        let session = self.duration(
            "agent.console_session",
            a.console_session.as_deref(),
            Duration::from_secs(30 * 60),
        );
        if session < Duration::from_secs(1) {
            self.err("agent.console_session", "must be at least 1s");
        }
        let addr = a.console.as_deref().and_then(|m| {
            // A port alone listens on loopback.
            m.parse::<u16>()
                .map(|p| std::net::SocketAddr::from(([127, 0, 0, 1], p)))
                .or_else(|_| m.parse::<std::net::SocketAddr>())
                .map_err(|_| {
                    self.err(
                        "agent.console",
                        format!(
                            "`{m}` is not an address: write host:port, e.g. 127.0.0.1:9188, \
                             or a port alone for loopback"
                        ),
                    )
                })
                .ok()
        });
        let mut users: Vec<ConsoleUser> = Vec::new();
        for (i, u) in std::mem::take(&mut a.console_user).into_iter().enumerate() {
            if let Some(u) = self.console_user(i, u, &users) {
                users.push(u);
            }
        }
        if a.console.is_some() && users.is_empty() {
            self.err(
                "agent.console",
                "the console needs at least one [[agent.console_user]] to sign in with",
            );
        }
        (addr, session, users)
    }

    fn console_user(
        &mut self,
        i: usize,
        u: super::super::schema::RawConsoleUser,
        before: &[ConsoleUser],
    ) -> Option<ConsoleUser> {
        let p = format!("agent.console_user[{i}]");
        let mut ok = true;
        if u.name.trim().is_empty() || u.name.chars().any(char::is_control) {
            self.err(
                format!("{p}.name"),
                "must be a name (no control characters)",
            );
            ok = false;
        }
        if before.iter().any(|b| b.name == u.name) {
            self.err(
                format!("{p}.name"),
                format!("`{}` is named by another console_user", u.name),
            );
            ok = false;
        }
        let role = match u.role.as_deref() {
            None | Some("viewer") => ConsoleRole::Viewer,
            Some("operator") => ConsoleRole::Operator,
            Some(r) => {
                self.err(
                    format!("{p}.role"),
                    format!("`{r}` is not a role: use viewer or operator"),
                );
                ok = false;
                ConsoleRole::Viewer
            }
        };
        if let Some(h) = &u.password_hash
            && let Err(e) = argon2::PasswordHash::new(h)
        {
            // The hash itself is not repeated: it is as good as the password to a guesser.
            self.err(
                format!("{p}.password_hash"),
                format!("not an argon2 hash in PHC form ($argon2id$v=19$m=...,t=...,p=...$salt$hash): {e}"),
            );
            ok = false;
        }
        let token = match u.token.as_deref() {
            Some(t) => match secret::resolve(t, self.base, self.env) {
                Ok(t) if t.trim().len() >= 16 => Some(Secret::new(t.trim().to_owned())),
                Ok(_) => {
                    self.err(format!("{p}.token"), "must be at least 16 characters long");
                    ok = false;
                    None
                }
                Err(e) => {
                    self.err(format!("{p}.token"), e);
                    ok = false;
                    None
                }
            },
            None => None,
        };
        if u.password_hash.is_none() && u.token.is_none() {
            self.err(
                format!("{p}"),
                "needs a password_hash or a token to sign in with",
            );
            ok = false;
        }
        ok.then_some(ConsoleUser {
            name: u.name,
            password_hash: u.password_hash,
            token,
            role,
        })
    }
}
