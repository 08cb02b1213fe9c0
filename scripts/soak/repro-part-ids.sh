#!/usr/bin/env bash
# A loss at the HTTP exchange found while extending the soak, and the check that it stays
# fixed: the ids of a split batch's parts used to number the parts (`BATCH.p1`, `BATCH.p2`),
# so a batch begun under one `max_records` and sent again under another (same rows, so the
# same batch id) reused `BATCH.p1` for other records; exchange-sim answered it from its memory
# (`replayed`) without applying it, and rows 31-40 were lost while the agent reported the
# batch delivered. Parts are now named by their records' positions (`BATCH.r1-30`).
#
#   scripts/soak/repro-part-ids.sh [AGENT_BINARY]
#
# Needs a PostgreSQL reachable as postgres://postgres@127.0.0.1:5432 (FRONTDB_TEST_PG
# overrides it) where it may create and drop the database soak_repro_part_ids.
# Exit 0: every row reached the sim; 1: rows are missing (the loss is back).
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${1:-${CARGO_TARGET_DIR:-target}/debug/frontdb-agent}
[ -x "$bin" ] || { echo "no agent binary at $bin (cargo build first, or pass its path)" >&2; exit 2; }
pg=${FRONTDB_TEST_PG:-postgres://postgres@127.0.0.1:5432}
db=soak_repro_part_ids
dir=$(mktemp -d /tmp/frontdb-repro-part-ids.XXXXXX)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
sim_pid=
cleanup() {
    [ -z "$sim_pid" ] || kill "$sim_pid" 2>/dev/null || true
    psql "$pg/postgres" -qAtc "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap cleanup EXIT

psql "$pg/postgres" -qAtc "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1
psql "$pg/postgres" -qAtc "CREATE DATABASE $db"
psql "$pg/$db" -qAtc "CREATE TABLE t (id int PRIMARY KEY, name text, updated_at timestamp(0) NOT NULL);
  INSERT INTO t SELECT i, 'n' || i, timestamp '2026-01-01' + i * interval '1 second' FROM generate_series(1, 60) i;"

# The sim applies the first request it gets and never answers it (as if the connection died
# after the province committed): the agent times out and must send the batch again.
cat > "$dir/sim.toml" <<EOF
listen = "127.0.0.1:$port"
store = "sim.db"
[[table]]
name = "t"
version = "updated_at"
[faults]
stall_after_batches = 1
EOF
agent_config() {
    cat > "$dir/agent.toml" <<EOF
[agent]
id = "repro"
state_dir = "$dir/state"
timezone = "UTC"
retry_max = "1s"
[source]
url = "$pg/$db"
[exchange]
kind = "http"
url = "http://127.0.0.1:$port/exchange/{table}"
timeout = "2s"
max_records = $1
[[table]]
source = "t"
watermark = { kind = "timestamp", column = "updated_at", lookback = "0s" }
batch_size = 1000
EOF
}
FRONTDB_LOG=warn "$bin" exchange-sim --config "$dir/sim.toml" > "$dir/sim.log" 2>&1 &
sim_pid=$!
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done

echo "== once with max_records = 30: part 1 (rows 1-30) is applied, its answer never comes"
agent_config 30
FRONTDB_LOG=error "$bin" --config "$dir/agent.toml" once || true
echo "== once with max_records = 40 (a reload or restart with another value): the same batch id"
agent_config 40
FRONTDB_LOG=error "$bin" --config "$dir/agent.toml" once
echo "== what the sim logged (batch id, outcome, ids of the records that came)"
rc=0
python3 - "$dir/sim.db" <<'EOF' || rc=$?
import json, sqlite3, sys
c = sqlite3.connect(sys.argv[1])
for b, o, body in c.execute("SELECT batch, outcome, body FROM requests ORDER BY seq"):
    ids = [r["key"]["id"] for r in json.loads(body)] if body else []
    print(f"  {b}  {o:<16} ids {ids[0]}-{ids[-1]}" if ids else f"  {b} {o}")
held = {int(k) for (k,) in c.execute("SELECT rkey FROM records WHERE tbl = 't'")}
missing = sorted(set(range(1, 61)) - held)
print(f"  the sim holds {len(held)} of 60 rows; missing: {missing}")
sys.exit(1 if missing else 0)
EOF
echo "== the agent's status"
FRONTDB_LOG=error "$bin" --config "$dir/agent.toml" status | sed -n '4,8p'
exit $rc
