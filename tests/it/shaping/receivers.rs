//! Everything a receiver holds, as text: one function per receiver kind, so that a test can
//! search it for values that must not be there.

use std::path::Path;

use crate::common::{MyDb, PgDb, sqlite_rows};

/// Every row of every table of a PostgreSQL database, one line each.
pub async fn pg_holdings(db: &PgDb) -> String {
    let tables = db
        .rows(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'",
        )
        .await;
    let mut out = String::new();
    for t in tables.into_iter().flatten().flatten() {
        for r in db.rows(&format!("SELECT x::text FROM \"{t}\" x")).await {
            out.push_str(&format!(
                "{t}: {}\n",
                r.into_iter().flatten().collect::<String>()
            ));
        }
    }
    out
}

/// Every row of every table of a MariaDB database, one line each.
pub async fn my_holdings(db: &MyDb) -> String {
    let tables = db
        .rows("SELECT CAST(table_name AS CHAR) FROM information_schema.tables WHERE table_schema = DATABASE()")
        .await;
    let mut out = String::new();
    for t in tables.into_iter().flatten().flatten() {
        let cols: Vec<String> = db
            .rows(&format!(
                "SELECT CAST(column_name AS CHAR) FROM information_schema.columns \
                 WHERE table_schema = DATABASE() AND table_name = '{t}' ORDER BY ordinal_position"
            ))
            .await
            .into_iter()
            .flatten()
            .flatten()
            .map(|c| format!("COALESCE(CAST(`{c}` AS CHAR), 'NULL')"))
            .collect();
        let sql = format!("SELECT CONCAT_WS('|', {}) FROM `{t}`", cols.join(", "));
        for r in db.rows(&sql).await {
            out.push_str(&format!(
                "{t}: {}\n",
                r.into_iter().flatten().collect::<String>()
            ));
        }
    }
    out
}

/// Every row of every table of an SQLite file, then the raw bytes of the file and of its
/// write-ahead log and journal (a value once written may linger in free pages).
pub async fn sqlite_holdings(path: &Path) -> String {
    let mut out = String::new();
    let tables = sqlite_rows(path, "SELECT name FROM sqlite_master WHERE type = 'table'").await;
    for t in tables.into_iter().flatten().flatten() {
        let cols: Vec<String> = sqlite_rows(
            path,
            &format!("SELECT name FROM pragma_table_info('{t}')"),
        )
        .await
        .into_iter()
        .flatten()
        .flatten()
        // Blobs (digests) as hex: the raw bytes below are searched as they are.
        .map(|c| {
            format!(
                "CASE typeof(\"{c}\") WHEN 'blob' THEN hex(\"{c}\") ELSE CAST(\"{c}\" AS TEXT) END"
            )
        })
        .collect();
        let sql = format!("SELECT {} FROM \"{t}\"", cols.join(", "));
        for r in sqlite_rows(path, &sql).await {
            let cells: Vec<String> = r.into_iter().map(|c| c.unwrap_or_default()).collect();
            out.push_str(&format!("{t}: {}\n", cells.join("|")));
        }
    }
    for suffix in ["", "-wal", "-journal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        if let Ok(bytes) = std::fs::read(&p) {
            out.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
    out
}

/// Every file under a file exchange's directory (data files, manifests, returned files), as
/// text.
pub fn file_holdings(dir: &Path) -> String {
    let mut out = String::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).expect("read dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                out.push_str(&format!(
                    "{}: {}\n",
                    p.display(),
                    String::from_utf8_lossy(&bytes)
                ));
            }
        }
    }
    out
}
