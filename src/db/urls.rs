//! Connection settings of the engines that take no URL of their own (SQL Server, Oracle),
//! read from the configured URL in one place.
//!
//! ```text
//! mssql://USER:PASSWORD@HOST[:PORT][/DATABASE][?instance=NAME&encrypt=true|false|required&trust_server_certificate=true]
//! oracle://USER:PASSWORD@HOST[:PORT]/SERVICE_NAME
//! ```
//!
//! User and password may be percent-encoded; `password = "..."` of the section replaces the
//! URL's. Errors never repeat the password.

use url::Url;

/// How a SQL Server connection is encrypted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encrypt {
    /// TLS for the login only (`encrypt=false`), as ADO.NET's `Encrypt=False`.
    Off,
    /// TLS for the whole session (the default, `encrypt=true` or `required`).
    Required,
    /// TDS 8.0: TLS before anything else (`encrypt=strict`, SQL Server 2022).
    Strict,
}

/// SQL Server connection settings.
#[derive(Clone, PartialEq, Eq)]
pub struct MsSqlUrl {
    pub host: String,
    /// `None` with an instance name: SQL Browser (UDP 1434) tells the port.
    pub port: Option<u16>,
    pub instance: Option<String>,
    pub database: Option<String>,
    pub user: String,
    pub password: String,
    pub encrypt: Encrypt,
    pub trust_server_certificate: bool,
    pub application_name: String,
}

/// Oracle connection settings.
#[derive(Clone, PartialEq, Eq)]
pub struct OracleUrl {
    pub user: String,
    pub password: String,
    /// Easy Connect string: `//host:port/service_name`.
    pub connect: String,
}

impl std::fmt::Debug for MsSqlUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MsSqlUrl")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("instance", &self.instance)
            .field("database", &self.database)
            .field("user", &self.user)
            .field("password", &"***")
            .field("encrypt", &self.encrypt)
            .field("trust_server_certificate", &self.trust_server_certificate)
            .finish()
    }
}

impl std::fmt::Debug for OracleUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OracleUrl")
            .field("user", &self.user)
            .field("password", &"***")
            .field("connect", &self.connect)
            .finish()
    }
}

fn parse(url: &str, schemes: &[&str]) -> Result<Url, String> {
    let u = Url::parse(url).map_err(|e| format!("not a URL ({e})"))?;
    if !schemes.contains(&u.scheme()) {
        return Err(format!("expected {}://", schemes[0]));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err("the URL names no host".into());
    }
    Ok(u)
}

fn decode(s: &str, what: &str) -> Result<String, String> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| format!("the {what} is not valid UTF-8 once percent-decoded"))
}

fn credentials(u: &Url, password: Option<&str>) -> Result<(String, String), String> {
    let user = decode(u.username(), "user name")?;
    if user.is_empty() {
        return Err("the URL names no user (write USER:PASSWORD@HOST)".into());
    }
    // The section's own password, else the URL's (`user:password@`, else `?password=`).
    let query = || {
        u.query_pairs()
            .find(|(k, _)| k.eq_ignore_ascii_case("password"))
            .map(|(_, v)| v.into_owned())
    };
    let password = match (password, u.password()) {
        (Some(p), _) => p.to_owned(),
        (None, Some(p)) => decode(p, "password")?,
        (None, None) => query().unwrap_or_default(),
    };
    Ok((user, password))
}

fn truth(key: &str, v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" => Ok(true),
        "false" | "no" | "0" => Ok(false),
        _ => Err(format!("`{key}={v}`: write true or false")),
    }
}

/// Read a `mssql://` (or `sqlserver://`) URL; `password` is the section's own, if any.
pub fn mssql(url: &str, password: Option<&str>) -> Result<MsSqlUrl, String> {
    let u = parse(url, &["mssql", "sqlserver"])?;
    let (user, password) = credentials(&u, password)?;
    let host = u.host_str().unwrap_or_default().to_owned();
    let database = match u.path().trim_start_matches('/') {
        "" => None,
        d if d.contains('/') => return Err(format!("`/{d}`: name one database")),
        d => Some(decode(d, "database name")?),
    };
    let mut out = MsSqlUrl {
        host,
        port: u.port(),
        instance: None,
        database,
        user,
        password,
        encrypt: Encrypt::Required,
        trust_server_certificate: false,
        application_name: "frontdb-agent".into(),
    };
    for (k, v) in u.query_pairs() {
        match k.to_ascii_lowercase().as_str() {
            "instance" | "instance_name" => out.instance = Some(v.into_owned()),
            "database" => out.database = Some(v.into_owned()),
            "encrypt" => {
                out.encrypt = match v.to_ascii_lowercase().as_str() {
                    "required" => Encrypt::Required,
                    "strict" => Encrypt::Strict,
                    other => match truth("encrypt", other)? {
                        true => Encrypt::Required,
                        false => Encrypt::Off,
                    },
                }
            }
            "trust_server_certificate" | "trustservercertificate" => {
                out.trust_server_certificate = truth("trust_server_certificate", &v)?;
            }
            "application_name" => out.application_name = v.into_owned(),
            "password" => {}
            other => {
                return Err(format!(
                    "`{other}` is not a SQL Server URL option: use instance, encrypt, \
                     trust_server_certificate or application_name"
                ));
            }
        }
    }
    if out.port.is_none() && out.instance.is_none() {
        out.port = Some(1433);
    }
    Ok(out)
}

/// Read an `oracle://` URL; `password` is the section's own, if any.
pub fn oracle(url: &str, password: Option<&str>) -> Result<OracleUrl, String> {
    let u = parse(url, &["oracle"])?;
    let (user, password) = credentials(&u, password)?;
    let service = u.path().trim_start_matches('/');
    if service.is_empty() || service.contains('/') {
        return Err("the URL names no service (write oracle://USER@HOST:1521/SERVICE)".into());
    }
    if let Some((k, _)) = u.query_pairs().find(|(k, _)| k != "password") {
        return Err(format!(
            "`{k}` is not an Oracle URL option (there are none)"
        ));
    }
    let host = u.host_str().unwrap_or_default();
    let port = u.port().unwrap_or(1521);
    Ok(OracleUrl {
        user,
        password,
        connect: format!("//{host}:{port}/{}", decode(service, "service name")?),
    })
}

/// An ODBC connection string from an `odbc://` URL or an `odbc:` connection string:
///
/// ```text
/// odbc://[USER[:PASSWORD]@]DSN          a data source of odbc.ini
/// odbc:Driver={...};Server=...;...      a connection string, as the driver documents it
/// ```
///
/// `password` (the section's own) replaces any in the URL (`PWD=`).
pub fn odbc(url: &str, password: Option<&str>) -> Result<String, String> {
    let mut parts: Vec<(String, String)> = Vec::new();
    if let Some(rest) = url.strip_prefix("odbc://") {
        let (user, dsn) = match rest.rsplit_once('@') {
            Some((u, d)) => (Some(u), d),
            None => (None, rest),
        };
        let dsn = dsn.trim_end_matches('/');
        if dsn.is_empty() {
            return Err("the URL names no data source (write odbc://DSN)".into());
        }
        parts.push(("DSN".into(), decode(dsn, "data source name")?));
        if let Some(u) = user {
            let (name, pw) = match u.split_once(':') {
                Some((n, p)) => (n, Some(p)),
                None => (u, None),
            };
            parts.push(("UID".into(), decode(name, "user name")?));
            if let Some(p) = pw {
                parts.push(("PWD".into(), decode(p, "password")?));
            }
        }
    } else if let Some(rest) = url.strip_prefix("odbc:") {
        parts = odbc_pairs(rest);
        if parts.is_empty() {
            return Err(
                "the connection string is empty (write odbc:Driver={...};Server=...)".into(),
            );
        }
    } else {
        return Err("expected odbc://DSN or odbc:Driver={...};...".into());
    }
    if let Some(p) = password {
        parts.retain(|(k, _)| !is_password_key(k));
        parts.push(("PWD".into(), p.to_owned()));
    }
    Ok(parts
        .iter()
        .map(|(k, v)| format!("{k}={}", odbc_value(v)))
        .collect::<Vec<_>>()
        .join(";"))
}

/// The keys of an ODBC connection string that hold a password.
fn is_password_key(k: &str) -> bool {
    k.eq_ignore_ascii_case("pwd") || k.eq_ignore_ascii_case("password")
}

/// A value as a connection string writes it: in braces when it holds `;`, braces or blanks
/// at its ends (a `}` inside is doubled).
fn odbc_value(v: &str) -> String {
    if v.contains([';', '{', '}']) || v.trim() != v {
        format!("{{{}}}", v.replace('}', "}}"))
    } else {
        v.to_owned()
    }
}

/// The `KEY=VALUE` pairs of a connection string (a value may be `{...}`, `}}` a brace).
fn odbc_pairs(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        let mut key = String::new();
        for c in chars.by_ref() {
            if c == '=' {
                break;
            }
            key.push(c);
        }
        let key = key.trim().trim_start_matches(';').trim().to_owned();
        let mut value = String::new();
        if chars.peek() == Some(&'{') {
            chars.next();
            while let Some(c) = chars.next() {
                if c == '}' {
                    if chars.peek() == Some(&'}') {
                        chars.next();
                        value.push('}');
                        continue;
                    }
                    break;
                }
                value.push(c);
            }
            for c in chars.by_ref() {
                if c == ';' {
                    break;
                }
            }
        } else {
            for c in chars.by_ref() {
                if c == ';' {
                    break;
                }
                value.push(c);
            }
        }
        if !key.is_empty() {
            out.push((key, value));
        }
        if chars.peek().is_none() {
            return out;
        }
    }
}

/// An ODBC URL or connection string with its password replaced by `***`.
pub fn odbc_redacted(url: &str) -> String {
    match url.strip_prefix("odbc:") {
        Some(rest) if !rest.starts_with("//") => {
            let pairs = odbc_pairs(rest);
            let text: Vec<String> = pairs
                .iter()
                .map(|(k, v)| match is_password_key(k) {
                    true => format!("{k}=***"),
                    false => format!("{k}={}", odbc_value(v)),
                })
                .collect();
            format!("odbc:{}", text.join(";"))
        }
        _ => crate::config::secret::redact_url(url),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odbc_urls_become_connection_strings_and_the_sections_password_wins() {
        assert_eq!(odbc("odbc://DM8_QZK", None).as_deref(), Ok("DSN=DM8_QZK"));
        assert_eq!(
            odbc("odbc://SYSDBA:p%40ss@DM8_QZK", None).as_deref(),
            Ok("DSN=DM8_QZK;UID=SYSDBA;PWD=p@ss")
        );
        assert_eq!(
            odbc("odbc://SYSDBA:old@DM8_QZK", Some("n;ew}")).as_deref(),
            Ok("DSN=DM8_QZK;UID=SYSDBA;PWD={n;ew}}}")
        );
        assert_eq!(
            odbc(
                "odbc:Driver={KingbaseES 8.6 ODBC Driver};Server=10.1.2.3;Port=54321;PWD=x;Database=前置库",
                Some("s3cret")
            )
            .as_deref(),
            Ok("Driver=KingbaseES 8.6 ODBC Driver;Server=10.1.2.3;Port=54321;Database=前置库;PWD=s3cret")
        );
        assert!(odbc("odbc://", None).is_err());
        assert!(odbc("odbc:", None).is_err());
        assert!(odbc("postgres://x", None).is_err());
    }

    #[test]
    fn odbc_passwords_are_redacted_in_both_forms() {
        assert_eq!(
            odbc_redacted(
                "odbc:Driver={DM8 ODBC DRIVER};Server=h;UID=SYSDBA;PWD={a;b}};c};Port=5236"
            ),
            "odbc:Driver=DM8 ODBC DRIVER;Server=h;UID=SYSDBA;PWD=***;Port=5236"
        );
        assert_eq!(
            odbc_redacted("odbc:Driver=x;Password=s3cret"),
            "odbc:Driver=x;Password=***"
        );
        assert_eq!(
            odbc_redacted("odbc://SYSDBA:s3cret@DM8_QZK"),
            "odbc://SYSDBA:***@DM8_QZK"
        );
    }

    #[test]
    fn mssql_urls_name_every_setting() {
        let u = mssql(
            "mssql://sync:p%40ss@10.0.0.5:1444/qzk?encrypt=true&trust_server_certificate=true",
            None,
        )
        .expect("url");
        assert_eq!(u.host, "10.0.0.5");
        assert_eq!(u.port, Some(1444));
        assert_eq!(u.database.as_deref(), Some("qzk"));
        assert_eq!((u.user.as_str(), u.password.as_str()), ("sync", "p@ss"));
        assert_eq!(u.encrypt, Encrypt::Required);
        assert!(u.trust_server_certificate);
        let u = mssql(
            "sqlserver://sa@db/x?instance=SQLEXPRESS&encrypt=false",
            Some("pw"),
        )
        .expect("url");
        assert_eq!(u.port, None, "an instance is found through SQL Browser");
        assert_eq!(u.instance.as_deref(), Some("SQLEXPRESS"));
        assert_eq!(u.encrypt, Encrypt::Off);
        assert_eq!(u.password, "pw", "the section's password wins");
        assert!(!u.trust_server_certificate);
        let u = mssql("mssql://sa:x@db", None).expect("url");
        assert_eq!((u.port, u.database), (Some(1433), None));
        // A password given as an option is used, as the other engines use it.
        let u = mssql("mssql://sa@db/x?password=q%26r", None).expect("url");
        assert_eq!(u.password, "q&r");
        let u = oracle("oracle://sync@db:1521/ORCL?password=pw", None).expect("url");
        assert_eq!(u.password, "pw");
    }

    #[test]
    fn bad_mssql_urls_are_refused_without_their_password() {
        for bad in [
            "mssql://sa:s3cret@db/x?encrypt=maybe",
            "mssql://sa:s3cret@db/x?trust_server_certificate=sometimes",
            "mssql://sa:s3cret@db/x?colour=red",
            "mssql://sa:s3cret@db/x/y",
            "mssql://:s3cret@db/x",
            "postgres://sa:s3cret@db/x",
        ] {
            let e = mssql(bad, None).expect_err(bad);
            assert!(!e.contains("s3cret"), "{e}");
        }
        let u = mssql("mssql://sa:s3cret@db/x", None).expect("url");
        assert!(!format!("{u:?}").contains("s3cret"));
    }

    #[test]
    fn oracle_urls_become_easy_connect_strings() {
        let u = oracle("oracle://sync:pw@10.0.0.6/ORCLPDB1", None).expect("url");
        assert_eq!(u.connect, "//10.0.0.6:1521/ORCLPDB1");
        assert_eq!((u.user.as_str(), u.password.as_str()), ("sync", "pw"));
        let u = oracle("oracle://sync@db:1522/xe", Some("p")).expect("url");
        assert_eq!(
            (u.connect.as_str(), u.password.as_str()),
            ("//db:1522/xe", "p")
        );
        for bad in [
            "oracle://sync:s3cret@db",
            "oracle://sync:s3cret@db:1521/",
            "oracle://sync:s3cret@db/x?sid=1",
        ] {
            let e = oracle(bad, None).expect_err(bad);
            assert!(!e.contains("s3cret"), "{e}");
        }
        let u = oracle("oracle://sync:s3cret@db/x", None).expect("url");
        assert!(!format!("{u:?}").contains("s3cret"));
    }
}
