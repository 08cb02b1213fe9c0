//! Any engine with an ODBC driver (`odbc://DSN` or `odbc:Driver={...};...`), through unixODBC
//! and the `odbc-api` crate: DM8, KingbaseES, GBase, Oracle-mode engines, and PostgreSQL and
//! MySQL/MariaDB through their own drivers. Built with the `odbc` cargo feature.
//!
//! The driver blocks: every call runs on tokio's blocking threads, on connections of this
//! module's own pool (at most `max_connections`, an idle one checked before reuse). The SQL
//! is the flavor's ([`Flavor`], from `dialect = ...` or the driver's DBMS name). Values are
//! read as text (bytes as bytes) and decoded by the column's type, so decimals keep their
//! digits and timestamps their microseconds; they are bound as text, integers, floats and
//! bytes. A batch is written in one transaction by multi-row upserts (`MERGE` for
//! Oracle-family engines), refused rows isolated under savepoints as on every engine.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use odbc_api::handles::Record;
use odbc_api::parameter::InputParameter;
use odbc_api::{Connection, ConnectionOptions, Cursor, IntoParameter, ResultSetMetadata};

use super::dialect::{Dialect, Flavor, Sql};
use super::{
    DbError, ErrorClass, PartWriter, ReadRow, Refused, TableSchema, WriteBatch, chunks, isolate,
    value_size,
};
use crate::db::{DbConfig, EngineKind};
use crate::ident::{Col, Ident, TableName};
use crate::value::{ColType, Value};

const E: EngineKind = EngineKind::Odbc;

/// The agent's `application_name` on PostgreSQL-family engines: its own sessions are not
/// open transactions to wait for.
const APPLICATION: &str = "frontdb-agent";

/// A pooled connection idle this long is checked before it is used again.
const CHECK_IDLE_AFTER: Duration = super::CHECK_IDLE_AFTER;

type Conn = Connection<'static>;

/// Oracle's version banner: 11g and earlier page by `ROWNUM` only.
const VERSION: &str = "SELECT banner FROM v$version WHERE banner LIKE 'Oracle%'";

struct Idle {
    conn: Conn,
    since: std::time::Instant,
}

struct Inner {
    connection_string: String,
    flavor: Flavor,
    login_timeout: Duration,
    statement_timeout: Option<usize>,
    idle: Mutex<Vec<Idle>>,
    permits: Arc<tokio::sync::Semaphore>,
    /// Oracle flavor: the server pages by `ROWNUM` only (11g and earlier).
    rownum: std::sync::atomic::AtomicBool,
}

pub struct Odbc {
    inner: Arc<Inner>,
}

/// The words of an ODBC error, and its SQLSTATE and native code.
fn parts(e: &odbc_api::Error) -> (String, Option<(String, i32)>) {
    match e {
        odbc_api::Error::Diagnostics { record, .. } => (
            message(record),
            Some((record.state.as_str().to_owned(), record.native_error)),
        ),
        other => (other.to_string(), None),
    }
}

fn message(r: &Record) -> String {
    String::from_utf16_lossy(&r.message).trim_end().to_owned()
}

/// What kind of failure an ODBC error is, by its SQLSTATE (and MySQL's error numbers, which
/// its driver reports under the general `HY000`).
fn classify(state: &str, native: i32, flavor: Flavor) -> ErrorClass {
    let class = state.get(..2).unwrap_or("");
    match (state, class) {
        ("40001" | "40P01" | "55P03", _) => ErrorClass::Transient,
        ("HYT00" | "HYT01" | "57014" | "57P01" | "57P02" | "57P03", _) => ErrorClass::Unavailable,
        (_, "08") => ErrorClass::Unavailable,
        (_, "22" | "23") => ErrorClass::Data,
        _ if flavor.family() == Dialect::MySql => match native {
            1205 | 1213 => ErrorClass::Transient,
            1048 | 1062 | 1136 | 1264 | 1292 | 1366 | 1406 | 1451 | 1452 | 4025 => ErrorClass::Data,
            2002 | 2003 | 2006 | 2013 | 1040 | 1053 => ErrorClass::Unavailable,
            _ => ErrorClass::Fatal,
        },
        // DM and Oracle: ORA-01400 (NULL), -01438 (precision), -12899 (too long), -00001.
        _ if flavor.family() == Dialect::Oracle => match native.abs() {
            1 | 1400 | 1438 | 1722 | 12899 | 2290 | 2291 | 2292 => ErrorClass::Data,
            60 => ErrorClass::Transient,
            _ => ErrorClass::Fatal,
        },
        _ => ErrorClass::Fatal,
    }
}

fn err(doing: impl Into<String>, flavor: Flavor) -> impl FnOnce(odbc_api::Error) -> DbError {
    let doing = doing.into();
    move |e| {
        let (cause, code) = parts(&e);
        let class = code
            .as_ref()
            .map_or(ErrorClass::Fatal, |(s, n)| classify(s, *n, flavor));
        DbError::Query {
            engine: E,
            doing,
            cause,
            code: code.map(|(s, _)| s),
            class,
        }
    }
}

fn joined(doing: String) -> impl FnOnce(tokio::task::JoinError) -> DbError {
    move |e| DbError::Query {
        engine: E,
        doing,
        cause: format!("the ODBC call failed: {e}"),
        code: None,
        class: ErrorClass::Fatal,
    }
}

/// What to do when unixODBC or the driver is missing, in the driver manager's words.
fn explained(cause: String) -> String {
    if cause.contains("IM002") || cause.contains("Data source name not found") {
        format!(
            "{cause} (the DSN is not in odbc.ini, or the driver named is not in odbcinst.ini: \
             install the engine's ODBC driver, e.g. apt-get install odbc-postgresql or \
             odbc-mariadb, and list it with `odbcinst -q -d`)"
        )
    } else if cause.contains("Can't open lib") {
        format!(
            "{cause} (the driver is not installed: install the engine's ODBC driver, e.g. \
             apt-get install odbc-postgresql or odbc-mariadb, and see `odbcinst -q -d` for the \
             names of those installed)"
        )
    } else if cause.contains("IM003") || cause.contains("could not be loaded") {
        format!(
            "{cause} (the driver's library could not be loaded: check the Driver = path in \
             /etc/odbcinst.ini and that the library's own dependencies are installed)"
        )
    } else {
        cause
    }
}

impl Inner {
    fn open(&self) -> Result<Conn, odbc_api::Error> {
        let env = odbc_api::environment()?;
        let options = ConnectionOptions {
            login_timeout_sec: u32::try_from(self.login_timeout.as_secs()).ok(),
            ..ConnectionOptions::default()
        };
        let c = env.connect_with_connection_string(&self.connection_string, options)?;
        for s in self.flavor.session() {
            c.execute(s, (), None)?;
        }
        if self.flavor == Flavor::Oracle {
            let banner = [text_col("banner")];
            if let Ok((rows, _)) =
                read_rows(&c, self.flavor, "", VERSION, &[], &banner, usize::MAX, None)
                && let Some(Value::Text(v)) = rows.first().and_then(|r| r.values.first())
            {
                let old = super::dialect::oracle_major(v).is_some_and(|m| m < 12);
                self.rownum.store(old, std::sync::atomic::Ordering::Relaxed);
            }
        }
        Ok(c)
    }

    /// A connection from the pool (an idle one checked first) or a new one.
    fn take(&self) -> Result<Conn, odbc_api::Error> {
        loop {
            let idle = self.idle.lock().ok().and_then(|mut v| v.pop());
            let Some(i) = idle else {
                return self.open();
            };
            if i.since.elapsed() < CHECK_IDLE_AFTER || !i.conn.is_dead().unwrap_or(true) {
                return Ok(i.conn);
            }
        }
    }

    fn give_back(&self, c: Conn) {
        if let Ok(mut v) = self.idle.lock() {
            v.push(Idle {
                conn: c,
                since: std::time::Instant::now(),
            });
        }
    }

    /// Run `f` on a pooled connection in autocommit mode. A connection that saw an error is
    /// closed, never reused.
    fn with<T>(
        &self,
        doing: &str,
        f: impl FnOnce(&Conn) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let c = self
            .take()
            .map_err(|e| with_explained(err(doing, self.flavor)(e)))?;
        let r = f(&c);
        if r.is_ok() {
            self.give_back(c);
        }
        r
    }
}

fn with_explained(e: DbError) -> DbError {
    match e {
        DbError::Query {
            engine,
            doing,
            cause,
            code,
            class,
        } => DbError::Query {
            engine,
            doing,
            cause: explained(cause),
            code,
            class,
        },
        other => other,
    }
}

/// `params` bound for ODBC: text (decimals, times, text), integers, floats and bytes.
/// Instants are written in UTC, the sessions' zone, with the offset where the engine takes
/// one (MySQL-family engines refuse it).
fn binds(params: &[Value], flavor: Flavor) -> Vec<Box<dyn InputParameter>> {
    let offset = flavor.family() != Dialect::MySql;
    params.iter().map(|v| bind(v, offset)).collect()
}

fn bind(v: &Value, offset: bool) -> Box<dyn InputParameter> {
    match v {
        Value::Null => Box::new(None::<String>.into_parameter()),
        Value::Int(i) => Box::new(Some(*i).into_parameter()),
        Value::Float(f) => Box::new(Some(*f).into_parameter()),
        Value::Bool(b) => Box::new(Some(i64::from(*b)).into_parameter()),
        Value::Bytes(b) => Box::new(Some(b.clone()).into_parameter()),
        Value::TimestampTz(t) => {
            let zone = if offset { "+00:00" } else { "" };
            Box::new(Some(t.format("%Y-%m-%d %H:%M:%S%.6f").to_string() + zone).into_parameter())
        }
        Value::Timestamp(t) => {
            Box::new(Some(t.format("%Y-%m-%d %H:%M:%S%.6f").to_string()).into_parameter())
        }
        other => Box::new(Some(other.to_text()).into_parameter()),
    }
}

/// Every row of a select, each cell read as text (bytes as bytes) and decoded as its
/// column's type, until `max_bytes` of values were read.
#[allow(clippy::too_many_arguments)]
fn read_rows(
    c: &Conn,
    flavor: Flavor,
    doing: &str,
    text: &str,
    params: &[Value],
    cols: &[Col],
    max_bytes: usize,
    timeout: Option<usize>,
) -> Result<(Vec<ReadRow>, bool), DbError> {
    let b = binds(params, flavor);
    let cursor = c
        .execute(text, &b[..], timeout)
        .map_err(err(doing, flavor))?;
    let Some(mut cursor) = cursor else {
        return Ok((Vec::new(), false));
    };
    let n = cursor.num_result_cols().map_err(err(doing, flavor))?;
    let n = u16::try_from(n).unwrap_or(0);
    if let Some(descs) = columnar_descs(&mut cursor, cols, n) {
        return match read_columnar(cursor, descs, cols, max_bytes) {
            Ok(Some(read)) => Ok(read),
            // A value longer than its column's declared size: read again cell by cell.
            Ok(None) => read_cells(c, flavor, doing, text, params, cols, max_bytes, timeout),
            Err(e) => Err(err(doing, flavor)(e)),
        };
    }
    read_cursor_cells(cursor, flavor, doing, cols, n, max_bytes)
}

/// Most characters (or bytes) of a column read in bound buffers; a longer column (CLOB,
/// BLOB, `text`) is read cell by cell.
const COLUMNAR_MAX: usize = 4000;
/// Rows fetched per round trip into bound buffers.
const COLUMNAR_ROWS: usize = 256;

/// Buffers for a select whose every column has a declared size up to [`COLUMNAR_MAX`]:
/// UTF-16 text, bytes for byte columns. `None` when some column is longer or unsized.
fn columnar_descs(
    cursor: &mut impl ResultSetMetadata,
    cols: &[Col],
    n: u16,
) -> Option<Vec<odbc_api::buffers::BufferDesc>> {
    use odbc_api::buffers::BufferDesc;
    if usize::from(n) < cols.len() {
        return None;
    }
    cols.iter()
        .enumerate()
        .map(|(i, col)| {
            let k = u16::try_from(i + 1).ok()?;
            let ty = cursor.col_data_type(k).ok()?;
            if col.ty == ColType::Bytes {
                let len = ty.column_size()?.get();
                (len <= COLUMNAR_MAX).then_some(BufferDesc::Binary { max_bytes: len })
            } else {
                let len = ty.utf16_len()?.get();
                (len <= COLUMNAR_MAX * 2).then_some(BufferDesc::WText { max_str_len: len })
            }
        })
        .collect()
}

/// A select's rows fetched into bound column buffers, [`COLUMNAR_ROWS`] a round trip. `None`
/// when a value did not fit its buffer.
fn read_columnar(
    cursor: impl Cursor,
    descs: Vec<odbc_api::buffers::BufferDesc>,
    cols: &[Col],
    max_bytes: usize,
) -> Result<Option<(Vec<ReadRow>, bool)>, odbc_api::Error> {
    let buffer = odbc_api::buffers::ColumnarDynBuffer::from_descs(COLUMNAR_ROWS, descs);
    let mut block = cursor.bind_buffer(buffer)?;
    let mut rows = Vec::new();
    let mut bytes = 0;
    loop {
        let batch = match block.fetch_with_truncation_check(true) {
            Ok(Some(b)) => b,
            Ok(None) => return Ok(Some((rows, false))),
            Err(odbc_api::Error::TooLargeValueForBuffer { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        for r in 0..batch.num_rows() {
            let row = super::read_row(cols, |i, col| {
                let cell = batch.column(i);
                if col.ty == ColType::Bytes {
                    let bin = cell.as_binary().ok_or("not a byte buffer")?;
                    return Ok(bin.get(r).map_or(Value::Null, |b| Value::Bytes(b.to_vec())));
                }
                let text = cell.as_wide_text().ok_or("not a text buffer")?;
                match text.get(r) {
                    Some(w) => decode(String::from_utf16_lossy(w), col),
                    None => Ok(Value::Null),
                }
            });
            bytes += row.values.iter().map(value_size).sum::<usize>();
            rows.push(row);
            if bytes >= max_bytes {
                return Ok(Some((rows, true)));
            }
        }
    }
}

/// [`read_rows`] cell by cell (`SQLGetData`), whatever the columns' sizes.
#[allow(clippy::too_many_arguments)]
fn read_cells(
    c: &Conn,
    flavor: Flavor,
    doing: &str,
    text: &str,
    params: &[Value],
    cols: &[Col],
    max_bytes: usize,
    timeout: Option<usize>,
) -> Result<(Vec<ReadRow>, bool), DbError> {
    let b = binds(params, flavor);
    let cursor = c
        .execute(text, &b[..], timeout)
        .map_err(err(doing, flavor))?;
    let Some(mut cursor) = cursor else {
        return Ok((Vec::new(), false));
    };
    let n = cursor.num_result_cols().map_err(err(doing, flavor))?;
    let n = u16::try_from(n).unwrap_or(0);
    read_cursor_cells(cursor, flavor, doing, cols, n, max_bytes)
}

fn read_cursor_cells(
    mut cursor: impl Cursor,
    flavor: Flavor,
    doing: &str,
    cols: &[Col],
    n: u16,
    max_bytes: usize,
) -> Result<(Vec<ReadRow>, bool), DbError> {
    let mut rows = Vec::new();
    let mut bytes = 0;
    let mut wide = Vec::new();
    let mut bin = Vec::new();
    while let Some(mut row) = cursor.next_row().map_err(err(doing, flavor))? {
        let mut failed = None;
        let r = super::read_row(cols, |i, col| {
            let Ok(k) = u16::try_from(i + 1) else {
                return Err("too many columns".to_owned());
            };
            if k > n {
                return Err("the row has fewer columns than the select".into());
            }
            if col.ty == ColType::Bytes {
                return match row.get_binary(k, &mut bin) {
                    Ok(true) => Ok(Value::Bytes(std::mem::take(&mut bin))),
                    Ok(false) => Ok(Value::Null),
                    Err(e) => {
                        failed.get_or_insert(e);
                        Ok(Value::Null)
                    }
                };
            }
            match row.get_wide_text(k, &mut wide) {
                Ok(true) => decode(String::from_utf16_lossy(&wide), col),
                Ok(false) => Ok(Value::Null),
                Err(e) => {
                    failed.get_or_insert(e);
                    Ok(Value::Null)
                }
            }
        });
        if let Some(e) = failed {
            return Err(err(doing, flavor)(e));
        }
        bytes += r.values.iter().map(value_size).sum::<usize>();
        rows.push(r);
        if bytes >= max_bytes {
            return Ok((rows, true));
        }
    }
    Ok((rows, false))
}

/// A cell's text as a value of its column's type. Timestamps with a zone are read in UTC
/// (every session runs in UTC).
fn decode(text: String, col: &Col) -> Result<Value, String> {
    let text = match col.ty {
        ColType::Text | ColType::Other => return Ok(Value::Text(text)),
        // A Oracle-family decimal below 1 is written `.5`.
        ColType::Decimal if text.starts_with('.') || text.starts_with("-.") => {
            text.replacen('.', "0.", 1)
        }
        _ => text,
    };
    Value::Text(text).coerce(col.ty, &chrono_tz::UTC)
}

fn text_col(name: &'static str) -> Col {
    Col {
        name: Ident::fixed(name),
        ty: ColType::Text,
        native: String::new(),
    }
}

fn int_col(name: &'static str) -> Col {
    Col {
        name: Ident::fixed(name),
        ty: ColType::Int,
        native: String::new(),
    }
}

impl Odbc {
    pub async fn connect(cfg: &DbConfig, role: &'static str, lazy: bool) -> Result<Self, DbError> {
        let connect_err = |cause: String, class| DbError::Connect {
            role,
            engine: E,
            url: cfg.redacted.clone(),
            cause,
            class,
        };
        let pw = cfg.password.as_ref().map(|p| p.expose());
        let connection_string = crate::db::urls::odbc(cfg.url.expose(), pw)
            .map_err(|e| connect_err(e, ErrorClass::Fatal))?;
        // Without a configured dialect, the driver tells the engine: a connection is made
        // now even when `lazy`.
        let flavor = match cfg.flavor {
            Some(f) => f,
            None => {
                let cs = connection_string.clone();
                let timeout = cfg.connect_timeout;
                let name = tokio::task::spawn_blocking(move || {
                    let env = odbc_api::environment()?;
                    let options = ConnectionOptions {
                        login_timeout_sec: u32::try_from(timeout.as_secs()).ok(),
                        ..ConnectionOptions::default()
                    };
                    env.connect_with_connection_string(&cs, options)?
                        .database_management_system_name()
                })
                .await
                .map_err(|e| connect_err(e.to_string(), ErrorClass::Fatal))?
                .map_err(|e| connect_err(explained(parts(&e).0), ErrorClass::Unavailable))?;
                Flavor::from_dbms_name(&name).ok_or_else(|| {
                    connect_err(
                        format!(
                            "the driver's engine is `{name}`, which the agent does not know: \
                             set dialect = \"dm\", \"kingbase\", \"gbase\", \"oracle\", \
                             \"postgres\" or \"mysql\" for the one whose SQL it speaks"
                        ),
                        ErrorClass::Fatal,
                    )
                })?
            }
        };
        let statement_timeout = (!cfg.statement_timeout.is_zero())
            .then(|| usize::try_from(cfg.statement_timeout.as_secs().max(1)).unwrap_or(usize::MAX));
        let db = Odbc {
            inner: Arc::new(Inner {
                connection_string,
                flavor,
                login_timeout: cfg.connect_timeout,
                statement_timeout,
                idle: Mutex::new(Vec::new()),
                permits: Arc::new(tokio::sync::Semaphore::new(
                    usize::try_from(cfg.max_connections.max(1)).unwrap_or(1),
                )),
                rownum: std::sync::atomic::AtomicBool::new(false),
            }),
        };
        if !lazy {
            let inner = db.inner.clone();
            let r = tokio::task::spawn_blocking(move || inner.take().map(|c| inner.give_back(c)))
                .await
                .map_err(|e| connect_err(e.to_string(), ErrorClass::Fatal))?;
            if let Err(e) = r {
                let (cause, code) = parts(&e);
                // A missing driver or data source will not pass by itself.
                let class = match code.as_ref().map(|(s, _)| s.as_str()) {
                    Some(s) if s.starts_with("IM") || s == "28000" => ErrorClass::Fatal,
                    _ if cause.contains("Can't open lib") => ErrorClass::Fatal,
                    _ => ErrorClass::Unavailable,
                };
                return Err(connect_err(explained(cause), class));
            }
        }
        Ok(db)
    }

    pub fn flavor(&self) -> Flavor {
        self.inner.flavor
    }

    /// One of the `max_connections` turns; none once the engine was closed.
    async fn permit(&self, doing: &str) -> Result<tokio::sync::OwnedSemaphorePermit, DbError> {
        self.inner
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| DbError::Query {
                engine: E,
                doing: doing.to_owned(),
                cause: "the connection pool was closed".into(),
                code: None,
                class: ErrorClass::Unavailable,
            })
    }

    /// Run `f` on a blocking thread with a pooled connection.
    async fn run<T: Send + 'static>(
        &self,
        doing: String,
        f: impl FnOnce(&Conn, Flavor) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, DbError> {
        let permit = self.permit(&doing).await?;
        let inner = self.inner.clone();
        let d = doing.clone();
        let r = tokio::task::spawn_blocking(move || {
            let flavor = inner.flavor;
            inner.with(&d, |c| f(c, flavor))
        })
        .await
        .map_err(joined(doing))?;
        drop(permit);
        r
    }

    pub async fn introspect(&self, t: &TableName) -> Result<Option<TableSchema>, DbError> {
        let doing = format!("reading the catalog for table {t}");
        let schema = t.schema.as_ref().map(|s| s.as_str().to_owned());
        let name = t.name.as_str().to_owned();
        let d = doing.clone();
        let found = self
            .run(doing, move |c, f| {
                let two = [text_col("schema"), text_col("name")];
                let p = [
                    schema.map(Value::Text).unwrap_or(Value::Null),
                    Value::Text(name.clone()),
                    Value::Text(name),
                ];
                let (rows, _) = read_rows(c, f, &d, f.find_table(), &p, &two, usize::MAX, None)?;
                let Some(found) = rows.into_iter().next() else {
                    return Ok(None);
                };
                let names = found.values;
                let cols = [
                    text_col("name"),
                    text_col("type"),
                    int_col("length"),
                    int_col("precision"),
                    int_col("scale"),
                ];
                let (columns, _) =
                    read_rows(c, f, &d, f.columns(), &names, &cols, usize::MAX, None)?;
                let keys = [text_col("k"), text_col("c"), int_col("p")];
                let (unique, _) =
                    read_rows(c, f, &d, f.unique_keys(), &names, &keys, usize::MAX, None)?;
                Ok(Some((names, columns, unique)))
            })
            .await?;
        let Some((names, column_rows, unique_rows)) = found else {
            return Ok(None);
        };
        let text = |v: Option<&Value>| match v {
            Some(Value::Text(s)) => Some(s.clone()),
            _ => None,
        };
        let int = |v: Option<&Value>| match v {
            Some(Value::Int(i)) => Some(*i),
            _ => None,
        };
        let flavor = self.inner.flavor;
        let mut columns = Vec::new();
        for r in &column_rows {
            let v = &r.values;
            let (Some(col), Some(ty)) = (text(v.first()), text(v.get(1))) else {
                continue;
            };
            let Ok(col) = Ident::new(&col) else { continue };
            let (len, p, s) = (int(v.get(2)), int(v.get(3)), int(v.get(4)));
            columns.push(Col {
                name: col,
                ty: col_type(flavor, &ty, p, s),
                native: native(flavor, &ty, len, p, s),
            });
        }
        let mut keys = Vec::new();
        for r in &unique_rows {
            let v = &r.values;
            let (Some(index), Some(col)) = (text(v.first()), text(v.get(1))) else {
                continue;
            };
            let Ok(col) = Ident::new(&col) else { continue };
            keys.push((index, col, int(v.get(2)) == Some(1)));
        }
        let (Some(schema), Some(name)) = (text(names.first()), text(names.get(1))) else {
            return Ok(None);
        };
        Ok(TableSchema::from_catalog(&schema, &name, columns, keys))
    }

    /// When the oldest transaction of another session began, where the engine tells; a note
    /// when the agent may not read the views that tell it.
    pub async fn oldest_transaction(
        &self,
    ) -> Result<(Option<DateTime<Utc>>, Option<String>), DbError> {
        let doing = "looking for open transactions".to_owned();
        let d = doing.clone();
        self.run(doing, move |c, f| {
            let (sql, n) = f.oldest_transaction();
            let params: Vec<Value> = (0..n).map(|_| Value::Text(APPLICATION.into())).collect();
            let col = [Col {
                name: Ident::fixed("t"),
                ty: ColType::Timestamp,
                native: String::new(),
            }];
            match read_rows(c, f, &d, sql, &params, &col, usize::MAX, None) {
                Ok((rows, _)) => Ok((
                    rows.first().and_then(|r| match r.values.first() {
                        Some(Value::Timestamp(t)) => Some(t.and_utc()),
                        _ => None,
                    }),
                    None,
                )),
                Err(e) if e.class() == ErrorClass::Fatal => Ok((
                    None,
                    Some(format!(
                        "the agent cannot see other sessions' transactions ({}): {} so that \
                         their open transactions are waited for",
                        e.cause(),
                        f.transaction_grant()
                    )),
                )),
                Err(e) => Err(e),
            }
        })
        .await
    }

    pub async fn now(&self) -> Result<DateTime<Utc>, DbError> {
        let doing = "reading the database time".to_owned();
        let d = doing.clone();
        self.run(doing, move |c, f| {
            let col = [Col {
                name: Ident::fixed("t"),
                ty: ColType::Timestamp,
                native: String::new(),
            }];
            let (rows, _) = read_rows(c, f, &d, f.now(), &[], &col, usize::MAX, None)?;
            match rows.first().and_then(|r| r.values.first()) {
                Some(Value::Timestamp(t)) => Ok(t.and_utc()),
                _ => Err(DbError::Query {
                    engine: E,
                    doing: d,
                    cause: "the database returned no time".into(),
                    code: None,
                    class: ErrorClass::Fatal,
                }),
            }
        })
        .await
    }

    pub async fn fetch(
        &self,
        sql: &Sql,
        cols: &[Col],
        max_bytes: usize,
    ) -> Result<(Vec<ReadRow>, bool), DbError> {
        let text = sql.text.clone();
        let inner = self.inner.clone();
        let params = sql.params.clone();
        let cols = cols.to_vec();
        let timeout = self.inner.statement_timeout;
        let doing = "reading rows".to_owned();
        let d = doing.clone();
        self.run(doing, move |c, f| {
            // Oracle 11g through ODBC pages by `ROWNUM`, as natively (known once connected).
            let text = match inner.rownum.load(std::sync::atomic::Ordering::Relaxed) {
                true => super::dialect::oracle_rownum(&text).unwrap_or(text),
                false => text,
            };
            read_rows(c, f, &d, &text, &params, &cols, max_bytes, timeout)
        })
        .await
    }

    pub async fn write(&self, w: &WriteBatch<'_>) -> Result<Vec<Refused>, DbError> {
        let table = w.upsert.table;
        let doing = format!("starting a transaction on {table}");
        let permit = self.permit(&doing).await?;
        let inner = self.inner.clone();
        let d = doing.clone();
        let flavor = inner.flavor;
        let conn = tokio::task::spawn_blocking(move || {
            let c = inner
                .take()
                .map_err(|e| with_explained(err(&d, flavor)(e)))?;
            c.set_autocommit(false).map_err(err(&d, flavor))?;
            Ok::<_, DbError>(c)
        })
        .await
        .map_err(joined(doing))??;
        let mut part = OdbcPart {
            conn: Some(conn),
            w,
            flavor,
            delete: w.delete_sql(Dialect::Odbc(flavor)),
            timeout: self.inner.statement_timeout,
        };
        let result = match isolate(&mut part, w.rows.len(), w.deletes.len()).await {
            Ok(refused) => {
                let commit = format!("committing the batch into {table}");
                part.call(commit.clone(), move |c| {
                    c.commit().map_err(err(commit, flavor))?;
                    c.set_autocommit(true)
                        .map_err(err("ending the transaction", flavor))
                })
                .await
                .map(|()| refused)
            }
            Err(e) => Err(e),
        };
        let inner = self.inner.clone();
        if let Some(c) = part.conn.take() {
            let ok = result.is_ok();
            // After a failure the rollback is awaited: it releases the rows' locks before the
            // batch is tried again. A connection that failed is closed, not reused.
            let _ = tokio::task::spawn_blocking(move || {
                if ok {
                    inner.give_back(c);
                } else {
                    let _ = c.rollback();
                }
            })
            .await;
        }
        drop(permit);
        result
    }

    pub async fn exec_many(&self, text: &str, rows: &[Vec<Value>]) -> Result<u64, DbError> {
        let text = text.to_owned();
        let rows = rows.to_vec();
        let doing = "updating rows".to_owned();
        let d = doing.clone();
        self.run(doing, move |c, f| {
            c.set_autocommit(false).map_err(err(&d, f))?;
            let mut n = 0u64;
            let mut prepared = c.prepare(&text).map_err(err(&d, f))?;
            for r in &rows {
                let b = binds(r, f);
                prepared.execute(&b[..]).map_err(err(&d, f))?;
                n += prepared
                    .row_count()
                    .map_err(err(&d, f))?
                    .map_or(0, |k| k as u64);
            }
            drop(prepared);
            c.commit().map_err(err(&d, f))?;
            c.set_autocommit(true).map_err(err(&d, f))?;
            Ok(n)
        })
        .await
    }

    pub async fn close(&self) {
        self.inner.permits.close();
        let idle = self
            .inner
            .idle
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default();
        let _ = tokio::task::spawn_blocking(move || drop(idle)).await;
    }
}

/// One batch's transaction: its connection, on which each part runs on a blocking thread.
struct OdbcPart<'a> {
    conn: Option<Conn>,
    w: &'a WriteBatch<'a>,
    flavor: Flavor,
    delete: String,
    timeout: Option<usize>,
}

impl OdbcPart<'_> {
    /// Run `f` on the batch's connection on a blocking thread, and take the connection back.
    async fn call<T: Send + 'static>(
        &mut self,
        doing: String,
        f: impl FnOnce(&Conn) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, DbError> {
        let Some(c) = self.conn.take() else {
            return Err(DbError::Query {
                engine: E,
                doing,
                cause: "the connection was lost".into(),
                code: None,
                class: ErrorClass::Unavailable,
            });
        };
        let (c, r) = tokio::task::spawn_blocking(move || {
            let r = f(&c);
            (c, r)
        })
        .await
        .map_err(joined(doing))?;
        self.conn = Some(c);
        r
    }
}

impl PartWriter for OdbcPart<'_> {
    async fn exec(&mut self, sql: &'static str) -> Result<(), DbError> {
        let (save, rollback, release) = Dialect::Odbc(self.flavor).savepoint();
        let text = match sql {
            s if s.starts_with("SAVEPOINT") => save,
            s if s.starts_with("ROLLBACK") => rollback,
            _ => match release {
                Some(r) => r,
                None => return Ok(()),
            },
        };
        let flavor = self.flavor;
        self.call("managing a savepoint".into(), move |c| {
            c.execute(text, (), None)
                .map(drop)
                .map_err(err("managing a savepoint", flavor))
        })
        .await
    }

    async fn part(
        &mut self,
        r: std::ops::Range<usize>,
        d: std::ops::Range<usize>,
    ) -> Result<(), DbError> {
        let d_ = Dialect::Odbc(self.flavor);
        let table = self.w.upsert.table.to_string();
        let rows = &self.w.rows[r];
        let width = self.w.upsert.columns.len();
        // Each statement: its text and its parameters, built here; run on the blocking thread.
        let mut statements: Vec<(String, Vec<Value>, String)> = Vec::new();
        let per = match d_.family() {
            Dialect::Oracle => d_.merge_params(width),
            _ => d_.param_budget().min(1000 * width.max(1)),
        };
        for (start, end) in chunks(rows, width, per) {
            let text = match d_.family() {
                Dialect::Oracle => d_.merge(&self.w.upsert, end - start),
                _ => d_.upsert_values(&self.w.upsert, end - start),
            };
            let params: Vec<Value> = rows[start..end].iter().flatten().cloned().collect();
            statements.push((text, params, format!("upserting into {table}")));
        }
        for del in &self.w.deletes[d] {
            statements.push((
                self.delete.clone(),
                del.clone(),
                format!("deleting from {table}"),
            ));
        }
        let (flavor, timeout) = (self.flavor, self.timeout);
        self.call(format!("writing into {table}"), move |c| {
            for (text, params, doing) in statements {
                let b = binds(&params, flavor);
                c.execute(&text, &b[..], timeout)
                    .map_err(err(doing, flavor))?;
            }
            Ok(())
        })
        .await
    }
}

/// The kind of a column from its catalog type name.
fn col_type(flavor: Flavor, ty: &str, precision: Option<i64>, scale: Option<i64>) -> ColType {
    let t = ty.to_ascii_lowercase();
    let t = t.as_str();
    match flavor.family() {
        Dialect::Postgres => match t {
            "bool" => ColType::Bool,
            "int2" | "int4" | "int8" => ColType::Int,
            "float4" | "float8" => ColType::Float,
            "numeric" => ColType::Decimal,
            "text" | "varchar" | "bpchar" | "name" => ColType::Text,
            "bytea" => ColType::Bytes,
            "date" => ColType::Date,
            "time" => ColType::Time,
            "timestamp" => ColType::Timestamp,
            "timestamptz" => ColType::TimestampTz,
            _ => ColType::Other,
        },
        Dialect::MySql => match t {
            "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" | "year" => {
                ColType::Int
            }
            "decimal" | "numeric" => ColType::Decimal,
            "float" | "double" | "real" => ColType::Float,
            "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" | "enum"
            | "set" => ColType::Text,
            "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => {
                ColType::Bytes
            }
            "date" => ColType::Date,
            "time" => ColType::Time,
            "datetime" => ColType::Timestamp,
            "timestamp" => ColType::TimestampTz,
            _ => ColType::Other,
        },
        // DM and Oracle: NUMBER(p, 0) of up to 18 digits is an integer.
        _ => match t {
            "number" | "numeric" | "decimal" | "dec" => match (precision, scale) {
                (Some(p), Some(0)) if p <= 18 => ColType::Int,
                _ => ColType::Decimal,
            },
            "int" | "integer" | "bigint" | "smallint" | "tinyint" | "byte" => ColType::Int,
            "bit" | "boolean" => ColType::Bool,
            "float" | "double" | "real" | "binary_float" | "binary_double" | "double precision" => {
                ColType::Float
            }
            "char" | "nchar" | "varchar" | "varchar2" | "nvarchar2" | "clob" | "nclob" | "text"
            | "long" | "character" => ColType::Text,
            "blob" | "raw" | "binary" | "varbinary" | "image" | "long raw" | "bfile" => {
                ColType::Bytes
            }
            "date" if flavor == Flavor::Dm => ColType::Date,
            "date" => ColType::Timestamp,
            "time" => ColType::Time,
            t if t.starts_with("timestamp") && t.contains("time zone") => ColType::TimestampTz,
            t if t.starts_with("timestamp") || t == "datetime" => ColType::Timestamp,
            _ => ColType::Other,
        },
    }
}

/// The type a placeholder is cast to, where the family casts (see the dialect): the type's
/// own name, with a length only where Oracle-family `CHAR` comparisons need one.
fn native(
    flavor: Flavor,
    ty: &str,
    len: Option<i64>,
    precision: Option<i64>,
    scale: Option<i64>,
) -> String {
    let t = ty.to_ascii_lowercase();
    match flavor.family() {
        Dialect::Oracle => match (t.as_str(), len, precision, scale) {
            ("char" | "nchar" | "character", Some(n), _, _) => format!("{t}({n})"),
            ("number" | "numeric" | "decimal", _, Some(p), Some(s)) => format!("{t}({p},{s})"),
            _ => t,
        },
        _ => t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified_by_sqlstate_and_engine_code() {
        assert_eq!(classify("23505", 0, Flavor::Postgres), ErrorClass::Data);
        assert_eq!(classify("22001", 0, Flavor::Kingbase), ErrorClass::Data);
        assert_eq!(
            classify("40P01", 0, Flavor::Postgres),
            ErrorClass::Transient
        );
        assert_eq!(classify("08S01", 0, Flavor::MySql), ErrorClass::Unavailable);
        assert_eq!(classify("HY000", 1406, Flavor::MySql), ErrorClass::Data);
        assert_eq!(
            classify("HY000", 1213, Flavor::Gbase),
            ErrorClass::Transient
        );
        assert_eq!(classify("HY000", 12899, Flavor::Dm), ErrorClass::Data);
        assert_eq!(classify("42S02", 0, Flavor::Dm), ErrorClass::Fatal);
    }

    #[test]
    fn catalog_types_map_to_kinds() {
        assert_eq!(
            col_type(Flavor::Dm, "NUMBER", Some(10), Some(0)),
            ColType::Int
        );
        assert_eq!(
            col_type(Flavor::Dm, "NUMBER", Some(12), Some(4)),
            ColType::Decimal
        );
        assert_eq!(col_type(Flavor::Dm, "DATE", None, None), ColType::Date);
        assert_eq!(
            col_type(Flavor::Oracle, "DATE", None, None),
            ColType::Timestamp
        );
        assert_eq!(
            col_type(Flavor::Dm, "TIMESTAMP WITH TIME ZONE", None, None),
            ColType::TimestampTz
        );
        assert_eq!(
            col_type(Flavor::Kingbase, "timestamptz", None, None),
            ColType::TimestampTz
        );
        assert_eq!(
            col_type(Flavor::Gbase, "datetime", None, None),
            ColType::Timestamp
        );
        assert_eq!(native(Flavor::Dm, "CHAR", Some(6), None, None), "char(6)");
        assert_eq!(
            native(Flavor::Kingbase, "varchar", Some(20), None, None),
            "varchar"
        );
    }
}
