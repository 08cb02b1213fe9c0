-- The state store of frontdb-agent (SQLite). Created at start; never dropped.
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tables (
    tbl TEXT PRIMARY KEY,
    watermark TEXT,
    rows_total INTEGER NOT NULL DEFAULT 0,
    deletes_total INTEGER NOT NULL DEFAULT 0,
    newest_change TEXT,
    last_started TEXT,
    last_finished TEXT,
    last_outcome TEXT,
    last_error TEXT,
    last_rows INTEGER,
    last_ms INTEGER,
    next_run TEXT,
    warnings TEXT
);
CREATE TABLE IF NOT EXISTS batches (
    id TEXT PRIMARY KEY,
    tbl TEXT NOT NULL,
    cd_batch TEXT NOT NULL,
    wm_from TEXT,
    wm_to TEXT,
    rows INTEGER NOT NULL,
    deletes INTEGER NOT NULL,
    rejected INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL,
    started TEXT NOT NULL,
    finished TEXT,
    error TEXT
);
CREATE INDEX IF NOT EXISTS batches_tbl ON batches (tbl, started);
CREATE TABLE IF NOT EXISTS digests (
    tbl TEXT NOT NULL,
    rkey TEXT NOT NULL,
    digest BLOB NOT NULL,
    ts TEXT,
    kvals TEXT NOT NULL,
    PRIMARY KEY (tbl, rkey)
) WITHOUT ROWID;
-- The lookback window's digests are read from this index alone (it holds rkey as well).
CREATE INDEX IF NOT EXISTS digests_ts_digest ON digests (tbl, ts, digest);
DROP INDEX IF EXISTS digests_ts;
CREATE TABLE IF NOT EXISTS rejects (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tbl TEXT NOT NULL,
    rkey TEXT NOT NULL,
    kvals TEXT NOT NULL,
    origin TEXT NOT NULL,
    state TEXT NOT NULL,
    reasons TEXT NOT NULL,
    row_json TEXT,
    digest BLOB,
    batch_id TEXT,
    first_seen TEXT NOT NULL,
    last_seen TEXT NOT NULL,
    resubmitted TEXT,
    cleared TEXT,
    UNIQUE (tbl, rkey)
);
CREATE TABLE IF NOT EXISTS counters (day TEXT PRIMARY KEY, n INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS resyncs (
    tbl TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    state TEXT NOT NULL,
    requested TEXT NOT NULL,
    started TEXT,
    finished TEXT,
    last_key TEXT,
    chunks INTEGER NOT NULL DEFAULT 0,
    rows INTEGER NOT NULL DEFAULT 0,
    deleted INTEGER NOT NULL DEFAULT 0,
    total INTEGER,
    resumed INTEGER NOT NULL DEFAULT 0,
    error TEXT
);
INSERT OR IGNORE INTO meta (k, v) VALUES ('schema', '1');
CREATE TABLE IF NOT EXISTS reject_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    reject_id INTEGER NOT NULL,
    at TEXT NOT NULL,
    event TEXT NOT NULL,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS reject_events_reject ON reject_events (reject_id, id);
-- Who asked for what (`rejects resubmit`, `resync`, `purge`, configuration reloads).
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    who TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT
);
