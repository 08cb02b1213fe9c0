#!/usr/bin/env bash
# frontdb-agent benchmark: the agent against the databases' own bulk paths, in the same run.
#
#   bench/bench.sh                 # every scenario on every shape, 1,000,000 rows (about 25 minutes)
#   SHAPE=scattered bench/bench.sh # one shape of the dataset (bench/lib.sh: time, scattered,
#                                  # text, composite); SHAPES="time text" for some
#   BEFORE=/path/to/old/frontdb-agent bench/bench.sh  # and an older build, shape by shape
#   ROWS=50000 BIG=0 RT_SECONDS=10 bench/bench.sh     # a smoke run
#   SCENARIOS="full incr" bench/bench.sh              # some scenarios only
#   AGENT=/path/to/frontdb-agent bench/bench.sh         # another build of the agent
#
# Scenarios (each prints a line of the final table):
#   full      PostgreSQL -> PostgreSQL, ROWS rows, target with primary key and index, upserting;
#             limit: psql \copy (format binary) piped into psql \copy into the same target
#   incr      CHANGED rows updated among ROWS, one `once` (process start included);
#             limit: the same rows piped by \copy into an empty table of the same shape, and
#             PostgreSQL's own upsert of them; then CHANGED new rows, one `once`;
#             limit: the same rows piped by \copy into a copy of the exchange table
#   realtime  a writer committing 10 rows every 20 ms (500 rows/s) for RT_SECONDS, the agent on
#             `realtime@1s`; commit-to-target latency p50/p99 from the target's arrival time
#   big       peak memory of a full exchange of BIG rows (no limit run)
#   http      PostgreSQL -> the HTTP exchange (built-in envelope, HMAC-SHA256) received by
#             `frontdb-agent exchange-sim` on loopback, ROWS rows; the reference is the agent's
#             own full PG->PG time (scenario full; goal: at most twice it); the receiver's row
#             count and ids are checked against the source
#   soap      the same through the SOAP exchange (SOAP 1.1, HMAC-SHA256, 5,000 records a call,
#             SOAP_PAYLOAD=xml by default, or json-gzip-base64 / csv-gzip-base64) to
#             exchange-sim's WebService; the receiver's row count and ids are checked
#   my2pg     MariaDB -> PostgreSQL; limit: `mariadb --batch` export piped into \copy
#   pg2my     PostgreSQL -> MariaDB; limit: \copy export piped into LOAD DATA LOCAL INFILE
#   lite2pg   SQLite -> PostgreSQL; limit: `sqlite3 -csv` export piped into \copy (FORMAT csv)
#   odbc      PostgreSQL -> PostgreSQL with the exchange reached through ODBC (unixODBC and
#             Debian's psqlODBC, "PostgreSQL Unicode"), then with the source reached so, ROWS
#             rows on the same data; the reference is the agent's native full PG->PG time
#             (scenario full; goal: at most 1.5 times it). The agent is then built with
#             `--features odbc`. In the default list only where that driver is installed
#             (apt-get install unixodbc unixodbc-dev odbc-postgresql); ODBC_PG sets the
#             connection string's server part (default: from PGURL)
#
# Every agent run is followed by a checksum of source and target (count and the sum of a hash
# of every row's canonical text, the same on both engines); a mismatch fails the run.
# Needs: psql, mariadb, sqlite3 (lite2pg), /usr/bin/time, cargo. Uses databases fdb_bench_* and drops them.
set -euo pipefail

ROWS=${ROWS:-1000000}
CHANGED=${CHANGED:-20000}
BIG=${BIG:-5000000}
RT_SECONDS=${RT_SECONDS:-60}
# The odbc scenario needs unixODBC and Debian's PostgreSQL ODBC driver.
odbc_ready() { command -v odbcinst >/dev/null && odbcinst -q -d -n "PostgreSQL Unicode" >/dev/null 2>&1; }
if [ -z "${SCENARIOS:-}" ]; then
    SCENARIOS="full incr realtime my2pg pg2my lite2pg big http soap"
    odbc_ready && SCENARIOS="$SCENARIOS odbc"
fi
export SCENARIOS
SOAP_PAYLOAD=${SOAP_PAYLOAD:-xml}

cd "$(dirname "$0")/.."
ROOT=$(pwd)
BASE=${BENCH_DIR:-${TMPDIR:-/tmp}/frontdb-bench}

if [ -z "${AGENT:-}" ]; then
    printf '\n== building the agent (release)\n' >&2
    features=()
    [[ " $SCENARIOS " == *" odbc "* ]] && features=(--features odbc)
    cargo build --release --quiet "${features[@]}"
    AGENT="$ROOT/target/release/frontdb-agent"
fi

# Without SHAPE: every scenario on each of SHAPES and, with BEFORE=/path/to/another/build,
# with that build too, right before this one on the same shape; then one table of them all.
if [ -z "${SHAPE:-}" ]; then
    SHAPES=${SHAPES:-time scattered text composite}
    rm -rf "$BASE"
    for shape in $SHAPES; do
        for build in ${BEFORE:+before} agent; do
            bin=$AGENT
            [ "$build" = before ] && bin=$BEFORE
            SHAPE=$shape AGENT=$bin BENCH_DIR="$BASE/$shape-$build" "$0"
        done
    done
    printf '\n== all shapes (agent: %s%s)\n' "$AGENT" "${BEFORE:+; before: $BEFORE}" >&2
    # shellcheck disable=SC2086
    python3 bench/shapes.py "$BASE" $SHAPES | tee "$BASE/results.md"
    exit 0
fi

. bench/lib.sh
fresh_work "$BASE"
say "shape: $SHAPE (key: $KEY_COLS)"


# --- dataset ---------------------------------------------------------------------------------
say "generating $ROWS supervision records in PostgreSQL (fdb_bench_src)"
pg_fresh fdb_bench_src
pg_ddl supervision | psqlq fdb_bench_src
start=$(date +%s.%N)
pg_generate fdb_bench_src supervision 1 "$ROWS"
psqlq fdb_bench_src -c "VACUUM ANALYZE supervision"
printf '   %s rows, %s, generated in %.1fs\n' "$ROWS" \
    "$(pgval fdb_bench_src "SELECT pg_size_pretty(pg_total_relation_size('supervision'))")" \
    "$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { print e - s }')" >&2
SRC_SUM=$(pg_sum fdb_bench_src supervision)

wants() { [[ " $SCENARIOS " == *" $1 "* ]]; }

# sim_same WHAT SIM_DB: exchange-sim's store holds the source's rows: their count and the sum of
# their ids where the key is the id (its keys are their JSON text), else their distinct keys.
sim_same() {
    local got want
    if [ "$KEY_COLS" = id ]; then
        got=$(python3 -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); print(c.execute(\"SELECT count(*), sum(CAST(rkey AS INTEGER)) FROM records WHERE tbl='supervision'\").fetchone())" "$2")
        want=$(pgval fdb_bench_src "SELECT '(' || count(*) || ', ' || sum(id) || ')' FROM supervision")
    else
        got=$(python3 -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); print(c.execute(\"SELECT count(DISTINCT rkey) FROM records WHERE tbl='supervision'\").fetchone()[0])" "$2")
        want=$(pgval fdb_bench_src "SELECT count(*) FROM supervision")
    fi
    same "$1 (count, sum of ids or distinct keys)" "$want" "$got"
}

# --- full PostgreSQL -> PostgreSQL -------------------------------------------------------------
if wants full || wants incr; then
    say "full exchange PostgreSQL -> PostgreSQL, $ROWS rows"
    pg_fresh fdb_bench_limit
    pg_ddl supervision | psqlq fdb_bench_limit
    measure copy_full bash -c "psql -X -q '$PGURL/fdb_bench_src' -c '\\copy (SELECT * FROM supervision) TO STDOUT (FORMAT binary)' \
        | psql -X -q '$PGURL/fdb_bench_limit' -c '\\copy supervision FROM STDIN (FORMAT binary)'"
    LIMIT_S=$SECS LIMIT_MB=$RSS_MB
    same "COPY pipe" "$SRC_SUM" "$(pg_sum fdb_bench_limit supervision)"
    psql -X -q "$PGURL/postgres" -c "DROP DATABASE fdb_bench_limit"

    pg_fresh fdb_bench_tgt
    pg_ddl supervision | psqlq fdb_bench_tgt
    agent_config "$WORK/pg.toml" "$PGURL/fdb_bench_src" "$PGURL/fdb_bench_tgt" supervision
    measure agent_full "$AGENT" --config "$WORK/pg.toml" once
    same "agent" "$SRC_SUM" "$(pg_sum fdb_bench_tgt supervision)"
    record "full PG→PG ${ROWS} rows" "$LIMIT_S" "$SECS" "$LIMIT_MB" "$RSS_MB"
    AGENT_FULL_S=$SECS AGENT_FULL_MB=$RSS_MB
fi

# start_sim DIR: exchange-sim on a free loopback port, storing into DIR/sim.db, checking the
# bench's HMAC signature; sets SIM_PID and SIM_URL.
start_sim() {
    rm -rf "$1"; mkdir -p "$1"
    cat >"$1/sim.toml" <<TOML
listen = "127.0.0.1:0"
store = "sim.db"
log_bodies = false
[auth]
kind = "hmac-sha256"
app_key = "bench"
app_secret = "bench-secret"
[[table]]
name = "supervision"
version = "updated_at"
key = $(key_list)
TOML
    "$AGENT" exchange-sim --config "$1/sim.toml" >"$1/out" 2>"$1/err" &
    SIM_PID=$!
    for _ in $(seq 100); do grep -q listening "$1/out" 2>/dev/null && break; sleep 0.1; done
    SIM_URL=$(sed -n 's/^listening on //p' "$1/out")
    [ -n "$SIM_URL" ] || die "exchange-sim did not start: $(cat "$1/err")"
}

# sim_config FILE URL KIND [MORE]: the agent's configuration for exchange-sim at URL, an
# exchange of KIND (http, soap) signing with the bench's HMAC key, MORE appended after
# [exchange.auth] (further [exchange.*] tables).
sim_config() {
    agent_config "$1" "$PGURL/fdb_bench_src" "$2" supervision
    # The database keys of agent_config's [exchange] give way to the kind's.
    sed -i "s|^\[exchange\]|[exchange]\nkind = \"$3\"\nmax_records = 5000|" "$1"
    # The [exchange.*] tables must follow [exchange], not the table: the table goes last.
    python3 - "$1" "${4:-}" <<'PY'
import sys
p, more = sys.argv[1], sys.argv[2]
head, table = open(p).read().split("[[table]]", 1)
auth = '[exchange.auth]\nkind = "hmac-sha256"\napp_key = "bench"\napp_secret = "bench-secret"\n'
open(p, "w").write(head + auth + more + "\n[[table]]" + table)
PY
}

# --- full PostgreSQL -> HTTP (exchange-sim) ----------------------------------------------------
if wants http; then
    say "full exchange PostgreSQL -> HTTP (exchange-sim, HMAC-SHA256), $ROWS rows"
    start_sim "$WORK/sim"
    sim_config "$WORK/http.toml" "$SIM_URL/exchange/{table}" http
    measure agent_http "$AGENT" --config "$WORK/http.toml" once
    kill "$SIM_PID"; wait "$SIM_PID" 2>/dev/null || true
    sim_same "agent over HTTP" "$WORK/sim/sim.db"
    record "full PG→HTTP (exchange-sim) ${ROWS} rows; reference: the agent PG→PG" "${AGENT_FULL_S:--}" "$SECS" "${AGENT_FULL_MB:--}" "$RSS_MB"
fi

# --- full PostgreSQL -> SOAP (exchange-sim) ----------------------------------------------------
if wants soap; then
    say "full exchange PostgreSQL -> SOAP 1.1 (exchange-sim, HMAC-SHA256, payload $SOAP_PAYLOAD), $ROWS rows"
    start_sim "$WORK/soapsim"
    sim_config "$WORK/soap.toml" "$SIM_URL/soap/{table}" soap "
[exchange.soap]
version = \"1.1\"
namespace = \"http://exchange.example.gov.cn/ws\"
operation = \"pushData\"
payload = \"$SOAP_PAYLOAD\"
"
    measure agent_soap "$AGENT" --config "$WORK/soap.toml" once
    kill "$SIM_PID"; wait "$SIM_PID" 2>/dev/null || true
    sim_same "agent over SOAP" "$WORK/soapsim/sim.db"
    record "full PG→SOAP $SOAP_PAYLOAD (exchange-sim) ${ROWS} rows; reference: the agent PG→PG" "${AGENT_FULL_S:--}" "$SECS" "${AGENT_FULL_MB:--}" "$RSS_MB"
fi

# --- incremental -------------------------------------------------------------------------------
if wants incr; then
    [ "$CHANGED" -le "$ROWS" ] || die "CHANGED ($CHANGED) must not exceed ROWS ($ROWS)"
    step=$(( ROWS / CHANGED ))
    say "incremental: $CHANGED of $ROWS rows changed"
    since=$(pgval fdb_bench_src "SELECT now()")
    psqlq fdb_bench_src -c "UPDATE supervision SET updated_at = clock_timestamp(), version = version + 1,
        remark = coalesce(remark, '') || '（复查）', penalty_amount = coalesce(penalty_amount, 0) + 1
        WHERE id % $step = 0 AND id <= $(( step * CHANGED ))"
    n=$(pgval fdb_bench_src "SELECT count(*) FROM supervision WHERE updated_at >= '$since'")
    [ "$n" -eq "$CHANGED" ] || die "expected $CHANGED changed rows, found $n"
    pg_fresh fdb_bench_limit
    pg_ddl supervision | psqlq fdb_bench_limit
    measure copy_incr bash -c "psql -X -q '$PGURL/fdb_bench_src' -c \"\\copy (SELECT * FROM supervision WHERE updated_at >= '$since') TO STDOUT (FORMAT binary)\" \
        | psql -X -q '$PGURL/fdb_bench_limit' -c '\\copy supervision FROM STDIN (FORMAT binary)'"
    LIMIT_S=$SECS LIMIT_MB=$RSS_MB
    psql -X -q "$PGURL/postgres" -c "DROP DATABASE fdb_bench_limit"
    # The same rows upserted by PostgreSQL alone (newer wins), into a copy of the exchange table
    # as the agent will find it: the limit for changing rows in place rather than appending.
    psql -X -q "$PGURL/postgres" -c "CREATE DATABASE fdb_bench_limit TEMPLATE fdb_bench_tgt"
    sets=$(echo "$COLS" | tr -d ' \n' | tr ',' '\n' | grep -vx -e "$(echo "$KEY_COLS" | sed 's/, */\n/g')" \
        | sed 's/.*/& = excluded.&/' | paste -sd,)
    cat >"$WORK/upsert.sql" <<SQL
BEGIN;
CREATE TEMP TABLE s (LIKE supervision) ON COMMIT DROP;
\\copy s FROM pstdin (FORMAT binary)
INSERT INTO supervision SELECT * FROM s ON CONFLICT ($KEY_COLS) DO UPDATE SET $sets
    WHERE supervision.updated_at <= excluded.updated_at;
COMMIT;
SQL
    measure copy_upsert bash -c "psql -X -q '$PGURL/fdb_bench_src' -c \"\\copy (SELECT * FROM supervision WHERE updated_at >= '$since') TO STDOUT (FORMAT binary)\" \
        | psql -X -q -v ON_ERROR_STOP=1 '$PGURL/fdb_bench_limit' -f '$WORK/upsert.sql'"
    UPSERT_S=$SECS UPSERT_MB=$RSS_MB
    same "upsert" "$(pg_sum fdb_bench_src supervision)" "$(pg_sum fdb_bench_limit supervision)"
    psql -X -q "$PGURL/postgres" -c "DROP DATABASE fdb_bench_limit"
    measure agent_incr "$AGENT" --config "$WORK/pg.toml" once
    same "agent" "$(pg_sum fdb_bench_src supervision)" "$(pg_sum fdb_bench_tgt supervision)"
    record "incremental ${CHANGED} of ${ROWS}" "$LIMIT_S" "$SECS" "$LIMIT_MB" "$RSS_MB"
    record "incremental ${CHANGED} of ${ROWS}, against PostgreSQL's own upsert of them" "$UPSERT_S" "$SECS" "$UPSERT_MB" "$RSS_MB"

    # CHANGED new rows (keys above every key there, changed after the last cycle): the other
    # half of a front-end table's day. Limit: the same rows piped by \copy into a copy of the
    # exchange table as the agent finds it (primary key and index). The agent's cycle also
    # re-reads its lookback window (5 minutes behind the watermark), which holds the CHANGED
    # rows of the step before: 2 x CHANGED rows read, CHANGED written.
    say "incremental: $CHANGED new rows after $ROWS"
    pg_generate fdb_bench_src supervision $(( ROWS + 1 )) $(( ROWS + CHANGED ))
    since=$(pgval fdb_bench_src "SELECT now()")
    psqlq fdb_bench_src -c "UPDATE supervision SET updated_at = clock_timestamp() WHERE id > $ROWS"
    n=$(pgval fdb_bench_src "SELECT count(*) FROM supervision WHERE updated_at >= '$since'")
    [ "$n" -eq "$CHANGED" ] || die "expected $CHANGED new rows, found $n"
    psql -X -q "$PGURL/postgres" -c "CREATE DATABASE fdb_bench_limit TEMPLATE fdb_bench_tgt"
    psqlq fdb_bench_limit -c "CHECKPOINT"
    measure copy_new bash -c "psql -X -q '$PGURL/fdb_bench_src' -c \"\\copy (SELECT * FROM supervision WHERE updated_at >= '$since') TO STDOUT (FORMAT binary)\" \
        | psql -X -q '$PGURL/fdb_bench_limit' -c '\\copy supervision FROM STDIN (FORMAT binary)'"
    LIMIT_S=$SECS LIMIT_MB=$RSS_MB
    same "COPY pipe" "$(pg_sum fdb_bench_src supervision)" "$(pg_sum fdb_bench_limit supervision)"
    psql -X -q "$PGURL/postgres" -c "DROP DATABASE fdb_bench_limit"
    psqlq fdb_bench_tgt -c "CHECKPOINT"
    measure agent_new "$AGENT" --config "$WORK/pg.toml" once
    same "agent" "$(pg_sum fdb_bench_src supervision)" "$(pg_sum fdb_bench_tgt supervision)"
    record "incremental ${CHANGED} new rows after ${ROWS} (the lookback re-read holds the ${CHANGED} of the step before)" "$LIMIT_S" "$SECS" "$LIMIT_MB" "$RSS_MB"
    # The later scenarios read ROWS rows.
    psqlq fdb_bench_src -c "DELETE FROM supervision WHERE id > $ROWS" -c "VACUUM ANALYZE supervision"
fi
psql -X -q "$PGURL/postgres" -c "DROP DATABASE IF EXISTS fdb_bench_tgt"

# --- full PostgreSQL -> PostgreSQL through ODBC ----------------------------------------------------
if wants odbc; then
    odbc_ready || die "scenario odbc: no ODBC driver \"PostgreSQL Unicode\" (apt-get install unixodbc unixodbc-dev odbc-postgresql)"
    # Server=...;Port=...;Uid=... of PGURL (postgres://user[:password]@host:port).
    ODBC_PG=${ODBC_PG:-$(python3 -c 'import sys, urllib.parse as u; p = u.urlsplit(sys.argv[1]); pw = ";Pwd=" + p.password if p.password else ""; print("Driver={PostgreSQL Unicode};Server=%s;Port=%s;Uid=%s%s" % (p.hostname, p.port or 5432, p.username or "postgres", pw))' "$PGURL")}
    src_sum=$(pg_sum fdb_bench_src supervision)
    say "full exchange PostgreSQL -> PostgreSQL with the exchange through ODBC, $ROWS rows"
    pg_fresh fdb_bench_tgt
    pg_ddl supervision | psqlq fdb_bench_tgt
    agent_config "$WORK/odbc.toml" "$PGURL/fdb_bench_src" "odbc:$ODBC_PG;Database=fdb_bench_tgt" supervision
    measure agent_odbc "$AGENT" --config "$WORK/odbc.toml" once
    same "agent into ODBC" "$src_sum" "$(pg_sum fdb_bench_tgt supervision)"
    record "full PG→PG, exchange through ODBC (psqlODBC) ${ROWS} rows; reference: the agent's native PG→PG (goal ≤ 1.5×)" "${AGENT_FULL_S:--}" "$SECS" "${AGENT_FULL_MB:--}" "$RSS_MB"
    say "full exchange PostgreSQL -> PostgreSQL with the source through ODBC, $ROWS rows"
    pg_fresh fdb_bench_tgt
    pg_ddl supervision | psqlq fdb_bench_tgt
    agent_config "$WORK/odbc-src.toml" "odbc:$ODBC_PG;Database=fdb_bench_src" "$PGURL/fdb_bench_tgt" supervision
    measure agent_odbc_src "$AGENT" --config "$WORK/odbc-src.toml" once
    same "agent from ODBC" "$src_sum" "$(pg_sum fdb_bench_tgt supervision)"
    record "full PG→PG, source through ODBC (psqlODBC) ${ROWS} rows; reference: the agent's native PG→PG (goal ≤ 1.5×)" "${AGENT_FULL_S:--}" "$SECS" "${AGENT_FULL_MB:--}" "$RSS_MB"
    psql -X -q "$PGURL/postgres" -c "DROP DATABASE IF EXISTS fdb_bench_tgt"
fi

# --- real time ---------------------------------------------------------------------------------
if wants realtime; then
    say "real time: 500 rows/s for ${RT_SECONDS}s, agent on realtime@1s"
    pg_ddl rt | psqlq fdb_bench_src
    pg_fresh fdb_bench_rt
    pg_ddl rt ",
    arrived_at     timestamp(6) DEFAULT clock_timestamp()" | psqlq fdb_bench_rt
    agent_config "$WORK/rt.toml" "$PGURL/fdb_bench_src" "$PGURL/fdb_bench_rt" rt \
        "schedule = \"realtime@1s\"
columns = [$(echo "$COLS" | tr -d '\n ' | sed 's/\([a-z_][a-z_]*\)/"\1"/g; s/,/, /g')]"
    /usr/bin/time -f '%e %M' -o "$WORK/agent_rt.time" "$AGENT" --config "$WORK/rt.toml" run \
        >"$WORK/agent_rt.out" 2>"$WORK/agent_rt.err" &
    agent_pid=$!
    sleep 2
    batches=$(( RT_SECONDS * 50 ))
    psqlq fdb_bench_src <<SQL
DO \$\$
DECLARE t0 timestamptz := clock_timestamp(); n int;
BEGIN
  FOR n IN 1..$batches LOOP
    INSERT INTO rt
    SELECT n * 10 + k, 'RT' || lpad((n * 10 + k)::text, 10, '0'), '91230100MA1' || lpad(k::text, 7, '0'),
           '哈尔滨实时监管有限公司', '张伟', '230102', '黑龙江省哈尔滨市南岗区学府路' || k || '号', '食品经营',
           '赵建国', clock_timestamp()::timestamp, k, k * 10.5, '实时写入，第' || n || '批', true,
           clock_timestamp()::timestamp, clock_timestamp()::timestamp, 1
    FROM generate_series(0, 9) AS k;
    COMMIT;
    PERFORM pg_sleep(greatest(0, extract(epoch FROM (t0 + n * interval '20 milliseconds') - clock_timestamp())));
  END LOOP;
END
\$\$;
SQL
    want=$(( batches * 10 ))
    for _ in $(seq 1 300); do
        got=$(pgval fdb_bench_rt "SELECT count(*) FROM rt")
        [ "$got" -ge "$want" ] && break
        sleep 0.1
    done
    pkill -TERM -P "$agent_pid"
    wait "$agent_pid" || die "the real-time agent did not stop cleanly (see $WORK/agent_rt.err)"
    read -r _ KB <"$WORK/agent_rt.time"
    RSS_MB=$(( (KB + 1023) / 1024 ))
    same "real time" "$(pg_sum fdb_bench_src rt)" "$(pg_sum fdb_bench_rt rt)"
    lat=$(pgval fdb_bench_rt "SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY d)::numeric, 3) || ' ' ||
        round(percentile_cont(0.99) WITHIN GROUP (ORDER BY d)::numeric, 3) || ' ' || round(max(d)::numeric, 3)
        FROM (SELECT extract(epoch FROM arrived_at - updated_at) AS d FROM rt) s")
    read -r P50 P99 PMAX <<<"$lat"
    record "real time 500 rows/s, commit-to-target latency p50 / p99 / max" "-" "${P50} s / ${P99} s / ${PMAX} s" "-" "$RSS_MB"
    psql -X -q "$PGURL/postgres" -c "DROP DATABASE fdb_bench_rt"
fi

# --- MariaDB -> PostgreSQL and PostgreSQL -> MariaDB -------------------------------------------
if wants my2pg || wants pg2my; then
    say "loading the dataset into MariaDB (fdb_bench_my)"
    my_fresh fdb_bench_my
    my_ddl supervision | myq fdb_bench_my
    psql -X -q "$PGURL/fdb_bench_src" -c "\\copy (SELECT $COLS FROM supervision) TO '$WORK/supervision.tsv'"
    # PostgreSQL's text format writes booleans as t/f; MariaDB wants 1/0 (column 14).
    awk -F'\t' 'BEGIN { OFS = "\t" } { if ($14 == "t") $14 = 1; else if ($14 == "f") $14 = 0; print }' \
        "$WORK/supervision.tsv" >"$WORK/supervision.my.tsv"
    myq fdb_bench_my --local-infile=1 -e "LOAD DATA LOCAL INFILE '$WORK/supervision.my.tsv' INTO TABLE supervision CHARACTER SET utf8mb4"
    MY_SUM=$(my_sum fdb_bench_my supervision)
    same "MariaDB copy of the dataset" "$(pg_sum fdb_bench_src supervision)" "$MY_SUM"
fi

if wants my2pg; then
    say "full exchange MariaDB -> PostgreSQL, $ROWS rows"
    pg_fresh fdb_bench_limit
    pg_ddl supervision | psqlq fdb_bench_limit
    measure copy_my2pg bash -c "mariadb ${MYSQL_ARGS[*]} --batch -N --quick fdb_bench_my -e 'SELECT * FROM supervision' \
        | psql -X -q '$PGURL/fdb_bench_limit' -c \"\\copy supervision FROM STDIN (NULL 'NULL')\""
    LIMIT_S=$SECS LIMIT_MB=$RSS_MB
    same "mariadb | \\copy" "$MY_SUM" "$(pg_sum fdb_bench_limit supervision)"
    psql -X -q "$PGURL/postgres" -c "DROP DATABASE fdb_bench_limit"
    pg_fresh fdb_bench_tgt
    pg_ddl supervision | psqlq fdb_bench_tgt
    agent_config "$WORK/my2pg.toml" "mysql://root@127.0.0.1:3306/fdb_bench_my" "$PGURL/fdb_bench_tgt" supervision
    measure agent_my2pg "$AGENT" --config "$WORK/my2pg.toml" once
    same "agent" "$MY_SUM" "$(pg_sum fdb_bench_tgt supervision)"
    record "full MariaDB→PG ${ROWS} rows" "$LIMIT_S" "$SECS" "$LIMIT_MB" "$RSS_MB"
    psql -X -q "$PGURL/postgres" -c "DROP DATABASE fdb_bench_tgt"
fi

if wants pg2my; then
    say "full exchange PostgreSQL -> MariaDB, $ROWS rows"
    my_fresh fdb_bench_mylimit
    my_ddl supervision | myq fdb_bench_mylimit
    measure copy_pg2my bash -c "psql -X -q '$PGURL/fdb_bench_src' -c \"\\copy (SELECT $(echo $COLS | sed 's/is_public/is_public::int/') FROM supervision) TO STDOUT\" \
        | mariadb ${MYSQL_ARGS[*]} --local-infile=1 fdb_bench_mylimit -e \"LOAD DATA LOCAL INFILE '/dev/stdin' INTO TABLE supervision CHARACTER SET utf8mb4\""
    LIMIT_S=$SECS LIMIT_MB=$RSS_MB
    same "\\copy | LOAD DATA" "$(pg_sum fdb_bench_src supervision)" "$(my_sum fdb_bench_mylimit supervision)"
    my_fresh fdb_bench_mytgt
    my_ddl supervision | myq fdb_bench_mytgt
    mariadb "${MYSQL_ARGS[@]}" -e "DROP DATABASE fdb_bench_mylimit"
    agent_config "$WORK/pg2my.toml" "$PGURL/fdb_bench_src" "mysql://root@127.0.0.1:3306/fdb_bench_mytgt" supervision
    measure agent_pg2my "$AGENT" --config "$WORK/pg2my.toml" once
    same "agent" "$(pg_sum fdb_bench_src supervision)" "$(my_sum fdb_bench_mytgt supervision)"
    record "full PG→MariaDB ${ROWS} rows" "$LIMIT_S" "$SECS" "$LIMIT_MB" "$RSS_MB"
    mariadb "${MYSQL_ARGS[@]}" -e "DROP DATABASE fdb_bench_mytgt"
fi
if wants my2pg || wants pg2my; then
    mariadb "${MYSQL_ARGS[@]}" -e "DROP DATABASE fdb_bench_my"
fi

# --- SQLite -> PostgreSQL -----------------------------------------------------------------------
if wants lite2pg; then
    command -v sqlite3 >/dev/null || die "sqlite3 not found (Debian package: sqlite3)"
    say "full exchange SQLite -> PostgreSQL, $ROWS rows"
    # SQLite keeps decimals exact only as text, date-times as their text, booleans as 0/1.
    # Indexed on the change time, as every source here.
    sqlite_ddl=$(pg_ddl supervision | sed 's/numeric(14,2)/text/; s/ bigint / integer /')
    rm -f "$WORK/src.sqlite"
    # NULL travels as an unquoted \N; no value of the dataset is that text.
    psql -X -q "$PGURL/fdb_bench_src" -c "\\copy (SELECT $COLS FROM supervision) TO '$WORK/supervision.csv' (FORMAT csv, NULL '\\N')"
    cols_nulls=$(echo "$COLS" | tr -d ' \n' | tr ',' '\n' \
        | sed "s/^is_public\$/CASE nullif(is_public, '\\\\N') WHEN 't' THEN 1 WHEN 'f' THEN 0 END/; t; s/.*/nullif(&, '\\\\N')/" | paste -sd,)
    sqlite3 "$WORK/src.sqlite" <<SQL
PRAGMA journal_mode = WAL;
$sqlite_ddl
CREATE TABLE raw ($(echo "$COLS" | tr -d ' \n' | sed 's/,/ text,/g') text);
.import --csv $WORK/supervision.csv raw
INSERT INTO supervision SELECT $cols_nulls FROM raw;
DROP TABLE raw;
VACUUM;
SQL
    pg_fresh fdb_bench_limit
    pg_ddl supervision | psqlq fdb_bench_limit
    measure copy_lite2pg bash -c "sqlite3 -csv -nullvalue '\\N' '$WORK/src.sqlite' 'SELECT $COLS FROM supervision' \
        | psql -X -q '$PGURL/fdb_bench_limit' -c \"\\copy supervision FROM STDIN (FORMAT csv, NULL '\\N')\""
    LIMIT_S=$SECS LIMIT_MB=$RSS_MB
    same "sqlite3 | \\copy" "$(pg_sum fdb_bench_src supervision)" "$(pg_sum fdb_bench_limit supervision)"
    psql -X -q "$PGURL/postgres" -c "DROP DATABASE fdb_bench_limit"
    pg_fresh fdb_bench_tgt
    pg_ddl supervision | psqlq fdb_bench_tgt
    agent_config "$WORK/lite2pg.toml" "sqlite://$WORK/src.sqlite" "$PGURL/fdb_bench_tgt" supervision
    measure agent_lite2pg "$AGENT" --config "$WORK/lite2pg.toml" once
    same "agent" "$(pg_sum fdb_bench_src supervision)" "$(pg_sum fdb_bench_tgt supervision)"
    record "full SQLite→PG ${ROWS} rows" "$LIMIT_S" "$SECS" "$LIMIT_MB" "$RSS_MB"
    psql -X -q "$PGURL/postgres" -c "DROP DATABASE fdb_bench_tgt"
fi

# --- memory on a big table ---------------------------------------------------------------------
if wants big && [ "$BIG" -gt 0 ]; then
    say "peak memory: full exchange of $BIG rows"
    pg_ddl big | psqlq fdb_bench_src
    pg_generate fdb_bench_src big 1 "$BIG"
    pg_fresh fdb_bench_tgt
    pg_ddl big | psqlq fdb_bench_tgt
    agent_config "$WORK/big.toml" "$PGURL/fdb_bench_src" "$PGURL/fdb_bench_tgt" big
    measure agent_big "$AGENT" --config "$WORK/big.toml" once
    same "agent" "$(pg_sum fdb_bench_src big)" "$(pg_sum fdb_bench_tgt big)"
    record "full PG→PG ${BIG} rows (memory)" "-" "$SECS" "-" "$RSS_MB"
    psql -X -q "$PGURL/postgres" -c "DROP DATABASE fdb_bench_tgt"
fi
psql -X -q "$PGURL/postgres" -c "DROP DATABASE fdb_bench_src"

# --- table -------------------------------------------------------------------------------------
say "results ($(nproc) cores, $(free -g | awk '/Mem:/ { print $2 }') GiB, $(psql -X -At "$PGURL/postgres" -c 'SHOW server_version' | cut -d' ' -f1) / MariaDB $(myval mysql 'SELECT version()' | cut -d- -f1))"
{
    printf '| scenario | limit | agent | agent / limit | limit RSS | agent RSS |\n'
    printf '| --- | ---: | ---: | ---: | ---: | ---: |\n'
    # Fields are never empty ("-" stands for none): read would merge adjacent tabs.
    while IFS=$'\t' read -r what limit agent lmb amb; do
        ratio=""
        if [ "$limit" != "-" ]; then
            ratio=$(awk -v a="$agent" -v l="$limit" 'BEGIN { printf "%.2f×", a / l }')
            limit="${limit} s"; agent="${agent} s"
        else
            limit=""
            [[ "$agent" == *" s"* ]] || agent="${agent} s"
        fi
        [ "$lmb" = "-" ] && lmb=""
        printf '| %s | %s | %s | %s | %s | %s MB |\n' "$what" "$limit" "$agent" "$ratio" \
            "${lmb:+$lmb MB}" "$amb"
    done <"$RESULTS"
} | tee "$WORK/results.md"
