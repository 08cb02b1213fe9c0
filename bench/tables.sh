#!/usr/bin/env bash
# frontdb-agent benchmark: many quiet tables. For each count of tables, that many tables of
# 1,000 rows each, all `realtime`, PostgreSQL -> PostgreSQL; the daemon starts, exchanges
# them, and then nothing changes for DURATION seconds. Reported per count: how long `check`
# and the start took, the agent's CPU, the PostgreSQL server's CPU (the agent's sessions),
# the bytes the agent wrote to disk, the source's transactions per second over the quiet
# period, and the latency of a change in one table after it (the slowest of CHANGES, 5, one after another).
#
#   bench/tables.sh                      # 200 and 1,000 tables, 60 s each
#   COUNTS="200" DURATION=30 bench/tables.sh
#   AGENT=/path/to/frontdb-agent bench/tables.sh     # another build of the agent
#
# Goals (issue #33), 200 quiet realtime tables: agent <= 1 % of a core, server <= 2 %, agent
# disk writes <= 100 KB a minute, a change exchanged within the table's interval (2 s).
# Needs: psql, /usr/bin/time, cargo. Uses databases fdb_bench_tsrc and fdb_bench_ttgt.
set -euo pipefail

COUNTS=${COUNTS:-"200 1000"}
DURATION=${DURATION:-60}
ROWS_PER_TABLE=${ROWS_PER_TABLE:-1000}

cd "$(dirname "$0")/.."
ROOT=$(pwd)
. bench/lib.sh
fresh_work "${BENCH_DIR:-${TMPDIR:-/tmp}/frontdb-bench-tables}"

if [ -z "${AGENT:-}" ]; then
    say "building the agent (release)"
    cargo build --release --quiet
    AGENT="$ROOT/target/release/frontdb-agent"
fi

HZ=$(getconf CLK_TCK)
# CPU seconds (user + system) of the processes PIDS so far.
cpu_of() {
    local total=0 p f
    for p in "$@"; do
        f=/proc/$p/stat
        [ -r "$f" ] || continue
        total=$(awk -v t="$total" -v hz="$HZ" '{ sub(/.*\) /, ""); print t + ($12 + $13) / hz }' "$f")
    done
    echo "$total"
}
written_of() { awk '/^write_bytes:/ { print $2 }' "/proc/$1/io"; }
backends() { pgval postgres "SELECT string_agg(pid::text, ' ') FROM pg_stat_activity WHERE datname IN ('fdb_bench_tsrc', 'fdb_bench_ttgt')"; }
xacts() { pgval postgres "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = 'fdb_bench_tsrc'"; }

printf 'tables\tcheck s\tstart s\tagent CPU %%\tserver CPU %%\tagent writes KB/min\tsource xact/s\tchange latency s\n' >"$RESULTS"
for n in $COUNTS; do
    say "$n quiet tables of $ROWS_PER_TABLE rows, ${DURATION}s"
    for db in fdb_bench_tsrc fdb_bench_ttgt; do
        psql -X -q "$PGURL/postgres" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
    done
    ddl="$WORK/ddl.sql"
    : >"$ddl"
    for i in $(seq 0 $((n - 1))); do
        echo "CREATE TABLE q$i (id int PRIMARY KEY, v text, updated_at timestamp(6) NOT NULL);" >>"$ddl"
        echo "CREATE INDEX ON q$i (updated_at, id);" >>"$ddl"
    done
    psqlq fdb_bench_tsrc -f "$ddl"
    psqlq fdb_bench_ttgt -f "$ddl"
    for i in $(seq 0 $((n - 1))); do
        echo "INSERT INTO q$i SELECT g, 'row ' || g, localtimestamp - interval '1 hour' FROM generate_series(1, $ROWS_PER_TABLE) g;"
    done | psqlq fdb_bench_tsrc
    psqlq fdb_bench_tsrc -c "VACUUM ANALYZE"
    cfg="$WORK/tables-$n.toml"
    cat >"$cfg" <<TOML
[agent]
id = "230000-BENCH"
state_dir = "$WORK/state-$n"
timezone = "UTC"
log_format = "text"

[source]
url = "$PGURL/fdb_bench_tsrc"

[exchange]
url = "$PGURL/fdb_bench_ttgt"
TOML
    for i in $(seq 0 $((n - 1))); do
        printf '\n[[table]]\nsource = "q%s"\nschedule = "realtime"\nwatermark = { kind = "timestamp", column = "updated_at" }\n' "$i" >>"$cfg"
    done
    t0=$(date +%s.%N)
    "$AGENT" --config "$cfg" check >"$WORK/check-$n.out" 2>&1 || die "check failed (see $WORK/check-$n.out)"
    t_check=$(awk -v s="$t0" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
    t0=$(date +%s.%N)
    FRONTDB_LOG=warn "$AGENT" --config "$cfg" run >"$WORK/run-$n.out" 2>"$WORK/run-$n.err" &
    agent=$!
    want=$(( n * ROWS_PER_TABLE ))
    sum_q=$(seq 0 $((n - 1)) | sed 's/.*/(SELECT count(*) FROM q&)/' | paste -sd+)
    for _ in $(seq 1 1200); do
        got=$(pgval fdb_bench_ttgt "SELECT $sum_q")
        [ "$got" -ge "$want" ] && break
        sleep 0.5
    done
    [ "$got" -ge "$want" ] || die "the agent did not exchange the $n tables (see $WORK/run-$n.err)"
    t_start=$(awk -v s="$t0" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
    # Let the first runs settle: their records, and the first re-reads of the windows that
    # find nothing (lookback / 10 after the start, 30 s by default), after which a quiet table
    # re-reads every lookback / 2.
    sleep "${SETTLE:-40}"
    pids=$(backends)
    c0=$(cpu_of "$agent"); s0=$(cpu_of $pids); w0=$(written_of "$agent"); x0=$(xacts)
    sleep "$DURATION"
    c1=$(cpu_of "$agent"); s1=$(cpu_of $pids); w1=$(written_of "$agent"); x1=$(xacts)
    agent_cpu=$(awk -v a="$c0" -v b="$c1" -v d="$DURATION" 'BEGIN { printf "%.2f", (b - a) * 100 / d }')
    server_cpu=$(awk -v a="$s0" -v b="$s1" -v d="$DURATION" 'BEGIN { printf "%.2f", (b - a) * 100 / d }')
    writes=$(awk -v a="$w0" -v b="$w1" -v d="$DURATION" 'BEGIN { printf "%.1f", (b - a) / 1024 * 60 / d }')
    xps=$(awk -v a="$x0" -v b="$x1" -v d="$DURATION" 'BEGIN { printf "%.1f", (b - a) / d }')
    # One change at a time in CHANGES tables (5), a few seconds apart: how long until each is
    # at the exchange; the slowest is reported.
    latency=0
    for c in $(seq 1 "${CHANGES:-5}"); do
        t=$(( (c * 37) % n ))
        psqlq fdb_bench_tsrc -c "UPDATE q$t SET v = 'changed $c', updated_at = localtimestamp WHERE id = 7"
        t0=$(date +%s.%N)
        for _ in $(seq 1 600); do
            [ "$(pgval fdb_bench_ttgt "SELECT count(*) FROM q$t WHERE v = 'changed $c'")" = 1 ] && break
            sleep 0.05
        done
        latency=$(awk -v s="$t0" -v e="$(date +%s.%N)" -v m="$latency" 'BEGIN { l = e - s; printf "%.2f", (l > m ? l : m) }')
        sleep "0.$(( RANDOM % 10 ))"
    done
    kill -TERM "$agent"
    wait "$agent" || die "the agent did not stop cleanly (see $WORK/run-$n.err)"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$n" "$t_check" "$t_start" "$agent_cpu" "$server_cpu" \
        "$writes" "$xps" "$latency" >>"$RESULTS"
done
for db in fdb_bench_tsrc fdb_bench_ttgt; do
    psql -X -q "$PGURL/postgres" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"
done

say "results ($(nproc) cores, PostgreSQL $(pgval postgres 'SHOW server_version' | cut -d' ' -f1), agent $AGENT)"
{
    printf '| tables | check | start | agent CPU | server CPU | agent writes | source xact/s | slowest change |\n'
    printf '| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n'
    tail -n +2 "$RESULTS" | while IFS=$'\t' read -r n chk st ac sc w x l; do
        printf '| %s | %s s | %s s | %s %% | %s %% | %s KB/min | %s | %s s |\n' "$n" "$chk" "$st" "$ac" "$sc" "$w" "$x" "$l"
    done
} | tee "$WORK/results.md"
