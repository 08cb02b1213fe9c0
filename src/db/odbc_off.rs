//! `odbc://` in a build without the `odbc` feature: connecting says how to get a build that
//! has it. (The feature links unixODBC, which the default build must not need.)

use chrono::{DateTime, Utc};

use super::dialect::{Flavor, Sql};
use super::{DbError, ErrorClass, ReadRow, Refused, TableSchema, WriteBatch};
use crate::db::DbConfig;
use crate::ident::{Col, TableName};
use crate::value::Value;

/// No value of it exists: [`Odbc::connect`] always fails.
pub enum Odbc {}

impl Odbc {
    pub async fn connect(cfg: &DbConfig, role: &'static str, _lazy: bool) -> Result<Self, DbError> {
        Err(DbError::Connect {
            role,
            engine: crate::db::EngineKind::Odbc,
            url: cfg.redacted.clone(),
            cause: "this frontdb-agent was built without ODBC support: install unixODBC \
                    (apt-get install unixodbc unixodbc-dev) and the engine's ODBC driver, \
                    then build with `cargo build --release --features odbc`"
                .into(),
            class: ErrorClass::Fatal,
        })
    }

    pub fn flavor(&self) -> Flavor {
        match *self {}
    }

    pub async fn introspect(&self, _t: &TableName) -> Result<Option<TableSchema>, DbError> {
        match *self {}
    }

    pub async fn oldest_transaction(
        &self,
    ) -> Result<(Option<DateTime<Utc>>, Option<String>), DbError> {
        match *self {}
    }

    pub async fn now(&self) -> Result<DateTime<Utc>, DbError> {
        match *self {}
    }

    pub async fn fetch(
        &self,
        _sql: &Sql,
        _cols: &[Col],
        _max_bytes: usize,
    ) -> Result<(Vec<ReadRow>, bool), DbError> {
        match *self {}
    }

    pub async fn write(&self, _w: &WriteBatch<'_>) -> Result<Vec<Refused>, DbError> {
        match *self {}
    }

    pub async fn exec_many(&self, _text: &str, _rows: &[Vec<Value>]) -> Result<u64, DbError> {
        match *self {}
    }

    pub async fn close(&self) {
        match *self {}
    }
}

#[cfg(test)]
mod tests {
    /// Built without the feature, an `odbc://` database fails at once, Fatal, saying what
    /// to install and how to build, and without its password.
    #[tokio::test]
    async fn without_the_feature_odbc_says_how_to_build_it() {
        let text = "[agent]\nid = \"a\"\nstate_dir = \"/tmp\"\ntimezone = \"UTC\"\n\
                    [source]\nurl = \"odbc:DSN=DM8;UID=SYSDBA;PWD=s3cret_pw\"\ndialect = \"dm\"\n\
                    [exchange]\nurl = \"postgres://x@127.0.0.1/x\"\n\
                    [[table]]\nsource = \"t\"\nwatermark = { kind = \"key\", column = \"id\" }\n";
        let cfg = crate::config::load_str(text, std::path::Path::new("/tmp/t.toml"))
            .unwrap_or_else(|e| panic!("{e}"));
        let e = match crate::db::Db::connect(&cfg.source, "source", true).await {
            Ok(_) => panic!("an ODBC database without ODBC"),
            Err(e) => e,
        };
        let msg = e.to_string();
        assert_eq!(e.class(), super::ErrorClass::Fatal);
        assert!(msg.contains("apt-get install unixodbc"), "{msg}");
        assert!(msg.contains("--features odbc"), "{msg}");
        assert!(!msg.contains("s3cret_pw"), "{msg}");
    }
}
