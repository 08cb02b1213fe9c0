//! Secrets: `${env:NAME}` and `${file:PATH}` references resolved.

use std::path::Path;

pub use crate::secret::Secret;

/// Where `${env:NAME}` finds NAME's value: [`process_env`] for the agent; tests pass a table
/// of their own rather than change the process's environment.
pub type EnvLookup = fn(&str) -> Option<String>;

/// The process's environment (a value that is not Unicode counts as unset).
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Replace every `${env:NAME}` (looked up in `env`) and `${file:PATH}` in `s`. A relative file
/// path is relative to `base`; the file's content loses its trailing newline. Errors name the
/// variable or file, never a value.
pub fn resolve(s: &str, base: &Path, env: EnvLookup) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err("`${` without a closing `}`".into());
        };
        let reference = &after[..end];
        match reference.split_once(':') {
            Some(("env", name)) => match env(name) {
                Some(v) => out.push_str(&v),
                None => return Err(format!("environment variable {name} is not set")),
            },
            Some(("file", path)) => {
                let p = base.join(path);
                match std::fs::read_to_string(&p) {
                    Ok(v) => out.push_str(v.trim_end_matches(['\r', '\n'])),
                    Err(e) => {
                        return Err(format!("cannot read secret file {}: {e}", p.display()));
                    }
                }
            }
            _ => {
                return Err(format!(
                    "`${{{reference}}}` is not a secret reference: use ${{env:NAME}} or ${{file:PATH}}"
                ));
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A database URL for messages: the password of `user:password@` and any `password=`
/// query parameter become `***`.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (Some(s), r),
        None => (None, url),
    };
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let q: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => kv.to_owned(),
                })
                .collect();
            format!("{path}?{}", q.join("&"))
        }
        None => tail.to_owned(),
    };
    match scheme {
        Some(s) => format!("{s}://{authority}{tail}"),
        None => format!("{authority}{tail}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_env_and_file_references() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("pw"), "s3cret\n").expect("write");
        let env: EnvLookup = |name| (name == "SECRET_A").then(|| "abc".to_owned());
        assert_eq!(
            resolve("x${env:SECRET_A}y${file:pw}z", dir.path(), env).as_deref(),
            Ok("xabcys3cretz")
        );
        let err = resolve("${env:SECRET_MISSING}", dir.path(), env).expect_err("unset");
        assert!(err.contains("SECRET_MISSING"), "{err}");
        assert!(resolve("${vault:x}", dir.path(), env).is_err());
        assert!(resolve("${env:X", dir.path(), env).is_err());
    }

    #[test]
    fn redacts_passwords_in_urls() {
        assert_eq!(
            redact_url("postgres://sync:p@ss@10.0.0.1:5432/qzk?sslmode=require&password=x"),
            "postgres://sync:***@10.0.0.1:5432/qzk?sslmode=require&password=***"
        );
        assert_eq!(
            redact_url("mysql://root@localhost/db"),
            "mysql://root@localhost/db"
        );
        assert_eq!(redact_url("sqlite:///tmp/a.db"), "sqlite:///tmp/a.db");
        assert_eq!(format!("{:?}", Secret::new("pw".into())), "Secret(***)");
    }
}
