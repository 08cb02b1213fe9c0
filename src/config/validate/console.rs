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
        let raw = std::mem::take(&mut a.console_user);
        if a.console.is_some() && raw.is_empty() {
            self.err(
                "agent.console",
                "the console needs at least one [[agent.console_user]] to sign in with",
            );
        }
        let mut names: Vec<String> = Vec::new();
        let mut users: Vec<ConsoleUser> = Vec::new();
        for (i, u) in raw.into_iter().enumerate() {
            let twice = names.contains(&u.name);
            names.push(u.name.clone());
            if let Some(u) = self.console_user(i, u, twice) {
                users.push(u);
            }
        }
        (addr, session, users)
    }

    fn console_user(
        &mut self,
        i: usize,
        u: super::super::schema::RawConsoleUser,
        twice: bool,
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
        if twice {
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
                p.clone(),
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{ConsoleRole, load_str_with};

    const BASE: &str = "[agent]\nid = \"a\"\nstate_dir = \"state\"\ntimezone = \"UTC\"\n";
    const REST: &str = "[source]\nurl = \"sqlite://src.db?mode=ro\"\n[exchange]\nurl = \"postgres://u@h/db\"\n\
        [[table]]\nsource = \"t\"\nwatermark = { kind = \"key\" }\n";
    const HASH: &str = "$argon2id$v=19$m=1024,t=1,p=1$Y29uc29sZS10ZXN0LXNhbHQ$3kx6jW0jpQj2oJ3cQmFYrC2qXk3i2qGx5m0oVZ8dQbE";

    fn env(name: &str) -> Option<String> {
        (name == "TOKEN").then(|| "a-token-of-twenty-chars".into())
    }

    fn load(agent: &str) -> Result<crate::config::Config, Vec<(String, Option<usize>, String)>> {
        load_str_with(
            &format!("{BASE}{agent}\n{REST}"),
            Path::new("/etc/fd/agent.toml"),
            env,
        )
        .map_err(|e| {
            e.problems
                .into_iter()
                .map(|p| (p.path, p.line, p.message))
                .collect()
        })
    }

    #[test]
    fn users_with_a_hash_or_a_token_and_a_role() {
        let cfg = load(&format!(
            "console = \"9188\"\nconsole_session = \"10m\"\n\
             [[agent.console_user]]\nname = \"li\"\npassword_hash = \"{HASH}\"\nrole = \"operator\"\n\
             [[agent.console_user]]\nname = \"script\"\ntoken = \"${{env:TOKEN}}\"\n"
        ))
        .expect("valid");
        let a = &cfg.agent;
        assert_eq!(a.console, Some("127.0.0.1:9188".parse().expect("addr")));
        assert_eq!(a.console_session, std::time::Duration::from_secs(600));
        assert_eq!(a.console_users.len(), 2);
        assert_eq!(a.console_users[0].role, ConsoleRole::Operator);
        assert_eq!(a.console_users[1].role, ConsoleRole::Viewer);
        // A token is a secret: scrubbed from messages like the others.
        assert!(
            cfg.secrets()
                .contains(&"a-token-of-twenty-chars".to_owned())
        );
    }

    #[test]
    fn the_console_is_off_by_default() {
        let cfg = load("").expect("valid");
        assert_eq!(cfg.agent.console, None);
        assert!(cfg.agent.console_users.is_empty());
    }

    #[test]
    fn every_problem_is_named_with_its_user_and_line() {
        let problems = load(
            "console = \"nowhere\"\n\
             [[agent.console_user]]\nname = \"li\"\npassword_hash = \"not-a-hash\"\nrole = \"admin\"\n\
             [[agent.console_user]]\nname = \"li\"\ntoken = \"short\"\n\
             [[agent.console_user]]\nname = \"wang\"\n",
        )
        .expect_err("problems");
        let has = |path: &str, word: &str| {
            problems
                .iter()
                .any(|(p, line, m)| p == path && line.is_some() && m.contains(word))
        };
        assert!(has("agent.console", "not an address"), "{problems:?}");
        assert!(
            has("agent.console_user[0].password_hash", "PHC"),
            "{problems:?}"
        );
        assert!(
            has("agent.console_user[0].role", "viewer or operator"),
            "{problems:?}"
        );
        assert!(
            has("agent.console_user[1].name", "another console_user"),
            "{problems:?}"
        );
        assert!(
            has("agent.console_user[1].token", "16 characters"),
            "{problems:?}"
        );
        assert!(
            has("agent.console_user[2]", "password_hash or a token"),
            "{problems:?}"
        );
        assert!(
            !problems.iter().any(|(_, _, m)| m.contains("not-a-hash")),
            "a hash is not repeated: {problems:?}"
        );
    }

    #[test]
    fn a_console_needs_a_user() {
        let problems = load("console = \"127.0.0.1:9188\"\n").expect_err("problems");
        assert!(
            problems
                .iter()
                .any(|(p, _, m)| p == "agent.console" && m.contains("console_user")),
            "{problems:?}"
        );
    }
}
