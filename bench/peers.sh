#!/usr/bin/env bash
# The tools a department would otherwise use, on bench.sh's dataset and workloads.
#
#   bench/peers.sh                                   # every tool and workload, 1,000,000 rows
#   ROWS=20000 CHANGED=400 bench/peers.sh            # a smoke run (about 80 s, plus the install)
#   TOOLS="sling dlt-arrow" WORKLOADS="full my2pg" bench/peers.sh
#
# Tools (TOOLS, default "ingestr sling dlt-arrow dlt-sqlalchemy"):
#   ingestr         the `ingestr` CLI (a Go binary shipped in the PyPI wheel), strategy merge on
#                   `id`, incremental key `updated_at`, --no-load-timestamp
#   sling           the `sling` CLI (a Go binary shipped in the PyPI wheel sling-linux-amd64, run
#                   directly, not through the Python wrapper), mode incremental, primary key `id`,
#                   update key `updated_at`
#   dlt-arrow       dlt's sql_database source `sql_table` (backend "pyarrow"), incremental on
#   dlt-sqlalchemy  `updated_at`, write_disposition merge on `id`; the same with backend "sqlalchemy"
#                   (a small Python script written into the work directory)
# Workloads (WORKLOADS, default "full incr my2pg"), the same as bench.sh's:
#   full    PostgreSQL -> PostgreSQL, ROWS rows, into a target made by pg_ddl (primary key and
#           index present), merging on `id`
#   incr    then CHANGED rows updated in the source as bench.sh does, and the tool run again;
#           ingestr keeps no incremental state between runs, so it gets two rows: the plain re-run
#           and a re-run with --interval-start set to max(updated_at) of the target
#   my2pg   MariaDB -> PostgreSQL, ROWS rows, into a target made by pg_ddl
# Every tool starts from the same source: the dataset is generated once in fdb_peer_src and each
# tool works on a copy (CREATE DATABASE fdb_peer_src_t TEMPLATE fdb_peer_src), so the UPDATE of
# one tool's incremental run is never seen by the next. Every run is followed by the checksum of
# lib.sh (source against target); a mismatch or a failing tool is reported in the table, not fatal.
#
# Installed: a Python virtual environment at PEERS_VENV (default ~/.cache/frontdb-bench/venv),
# created with `python3 -m venv` and filled by pip from PyPI with the versions pinned below; it is
# reused while the pins are unchanged (the install time is printed when it happens). The sling
# binary is linked as $PEERS_VENV/bin/sling. Work files (each tool's output, the results) go to
# PEERS_DIR (default $TMPDIR/frontdb-peers). Databases fdb_peer_* are dropped on exit.
# The servers: PGURL as in lib.sh, MariaDB as lib.sh's MYSQL_ARGS and, for the tools, MYURL
# (default mysql://root@127.0.0.1:3306).
#
# Absolute seconds depend on the machine (and on anything else running on it); what carries over
# is the ratio of each tool to the limit that bench.sh measures, the databases' own COPY path on the
# same data (run bench.sh separately, with the same ROWS and CHANGED, on the same machine).
# Peak RSS is /usr/bin/time's %M: the largest single process of the run, not the sum over
# processes (ingestr and sling run as one Go process, dlt as one Python process here; the database
# servers' memory is never counted).
# Needs: python3 (with venv), psql, mariadb, /usr/bin/time; linux x86_64 (the sling wheel).
set -euo pipefail

SLING_VERSION=1.4.11
INGESTR_VERSION=1.0.78
DLT_VERSION=1.31.0
PYARROW_VERSION=26.0.1
SQLALCHEMY_VERSION=2.1.9
PSYCOPG2_VERSION=2.9.13
PYMYSQL_VERSION=1.2.4
# dlt 1.31 has no `sql_database` extra any more (pip: "dlt 1.31.0 does not provide the extra
# 'sql_database'"): the source is built in and needs sqlalchemy, plus pymysql for MariaDB.
PIP_SPECS=("sling-linux-amd64==$SLING_VERSION" "ingestr==$INGESTR_VERSION"
           "dlt[postgres]==$DLT_VERSION" "pyarrow==$PYARROW_VERSION"
           "sqlalchemy==$SQLALCHEMY_VERSION" "psycopg2-binary==$PSYCOPG2_VERSION"
           "pymysql==$PYMYSQL_VERSION")

ROWS=${ROWS:-1000000}
CHANGED=${CHANGED:-20000}
TOOLS=${TOOLS:-"ingestr sling dlt-arrow dlt-sqlalchemy"}
WORKLOADS=${WORKLOADS:-"full incr my2pg"}
PEERS_VENV=${PEERS_VENV:-$HOME/.cache/frontdb-bench/venv}
MYURL=${MYURL:-mysql://root@127.0.0.1:3306}   # the MariaDB of lib.sh's MYSQL_ARGS, as a URL

cd "$(dirname "$0")/.."
. bench/lib.sh
fresh_work "${PEERS_DIR:-${TMPDIR:-/tmp}/frontdb-peers}"

for t in $TOOLS; do
    case $t in ingestr|sling|dlt-arrow|dlt-sqlalchemy) ;; *) die "unknown tool '$t' (TOOLS)";; esac
done
for w in $WORKLOADS; do
    case $w in full|incr|my2pg) ;; *) die "unknown workload '$w' (WORKLOADS)";; esac
done
[ "$(uname -sm)" = "Linux x86_64" ] || die "the sling wheel pinned here is for Linux x86_64"
wants() { [[ " $WORKLOADS " == *" $1 "* ]]; }

# Every database made here, dropped on exit whatever happens.
PG_DBS=() MY_DBS=()
cleanup() {
    local db
    for db in ${PG_DBS[@]+"${PG_DBS[@]}"}; do
        psql -X -q "$PGURL/postgres" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" 2>/dev/null || true
    done
    for db in ${MY_DBS[@]+"${MY_DBS[@]}"}; do
        mariadb "${MYSQL_ARGS[@]}" -e "DROP DATABASE IF EXISTS $db" 2>/dev/null || true
    done
}
trap cleanup EXIT
quiet() { PGOPTIONS='-c client_min_messages=warning' "$@"; }
pg_new() { # DB [TEMPLATE]: a fresh database, from TEMPLATE or with the pg_ddl target table
    PG_DBS+=("$1")
    if [ -n "${2:-}" ]; then
        quiet psql -X -q "$PGURL/postgres" -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1 TEMPLATE $2"
    else
        quiet pg_fresh "$1"
        pg_ddl supervision | psqlq "$1"
    fi
}
pg_drop() { psql -X -q "$PGURL/postgres" -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)"; }

# --- the tools ---------------------------------------------------------------------------------
PINS="${PIP_SPECS[*]}"
INSTALL_S=""
if [ ! -x "$PEERS_VENV/bin/python" ] || [ "$(cat "$PEERS_VENV/.peers-pins" 2>/dev/null)" != "$PINS" ]; then
    say "installing the tools into $PEERS_VENV (pip, from PyPI)"
    start=$(date +%s.%N)
    [ -x "$PEERS_VENV/bin/python" ] || python3 -m venv "$PEERS_VENV" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
    "$PEERS_VENV/bin/pip" install --disable-pip-version-check --no-input -q "${PIP_SPECS[@]}"
    printf '%s' "$PINS" >"$PEERS_VENV/.peers-pins"
    INSTALL_S=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.0f", e - s }')
    printf '   installed in %ss (%s)\n' "$INSTALL_S" "$(du -sh "$PEERS_VENV" | cut -f1)" >&2
else
    say "reusing the tools in $PEERS_VENV"
fi
PY="$PEERS_VENV/bin/python"
INGESTR="$PEERS_VENV/bin/ingestr"
SLING="$PEERS_VENV/bin/sling"
# The wheel sling-linux-amd64 only carries the binary (the `sling` package is a Python wrapper that
# would run it as a child process): link it onto the venv's PATH.
[ -x "$SLING" ] || ln -sf "$("$PY" -c 'import sling_linux_amd64 as s; print(s.SLING_BIN)')" "$SLING"
VERSIONS="ingestr $("$INGESTR" --version | awk '{ print $NF }'), sling $("$SLING" --version | awk '{ print $NF }'), dlt $("$PY" -c 'import dlt; print(dlt.__version__)')"
printf '   %s\n' "$VERSIONS" >&2

# No telemetry, no state outside the work directory.
export INGESTR_DISABLE_TELEMETRY=true SLING_DISABLE_TELEMETRY=true RUNTIME__DLTHUB_TELEMETRY=false
export SLING_HOME_DIR="$WORK/sling-home" NO_COLOR=1
DLT_PIPELINES="$WORK/dlt-pipelines"

# dlt: one sql_table resource, incremental on updated_at, merged on id, into the existing table.
cat >"$WORK/dlt_sync.py" <<'PY'
import sys
from urllib.parse import urlsplit, urlunsplit

import dlt
import sqlalchemy as sa
from dlt.sources.sql_database import sql_table

source_url, table, target_url, backend, pipeline_name, pipelines_dir = sys.argv[1:7]

def tinyint1_as_bool(t):
    # MySQL/MariaDB spell boolean as tinyint(1); SQLAlchemy reflects it as an integer, which the
    # PostgreSQL target's boolean column refuses ("is of type boolean but expression is of type bigint").
    for c in t.columns:
        if type(c.type).__name__ == "TINYINT" and getattr(c.type, "display_width", None) == 1:
            c.type = sa.Boolean()
    return t

# dlt's postgres credentials require a password; with trust authentication any one does.
u = urlsplit(target_url)
if u.password is None:
    u = u._replace(netloc=f"{u.username or 'postgres'}:unused@{u.hostname}:{u.port or 5432}")

resource = sql_table(credentials=source_url, table=table, backend=backend,
                     incremental=dlt.sources.incremental("updated_at"),
                     write_disposition="merge", primary_key="id",
                     table_adapter_callback=tinyint1_as_bool)
pipeline = dlt.pipeline(pipeline_name=pipeline_name, pipelines_dir=pipelines_dir,
                        destination=dlt.destinations.postgres(urlunsplit(u)), dataset_name="public")
print(pipeline.run(resource))
print(pipeline.last_trace.last_normalize_info)
PY

PG_URI=${PGURL/#postgres:\/\//postgresql://}     # ingestr and sling spell the scheme out
HOSTPART=${PGURL#*://}
SA_PG="postgresql+psycopg2://$HOSTPART"          # SQLAlchemy 2.1 would pick psycopg 3 otherwise
SA_MY="mysql+pymysql://${MYURL#*://}"

# tool_cmd TOOL SOURCE(pg|my) SOURCE_DB TARGET_DB RUN(full|incr|since) PIPELINE: sets CMD and NOTE.
tool_cmd() {
    local tool=$1 kind=$2 sdb=$3 tdb=$4 run=$5 pipe=$6 src stream
    NOTE=""
    case $tool in
    ingestr)
        if [ "$kind" = pg ]; then src="$PG_URI/$sdb" stream=public.supervision; else src="$MYURL/$sdb" stream="$sdb.supervision"; fi
        CMD=("$INGESTR" ingest --yes --progress log --source-uri "$src" --source-table "$stream"
             --dest-uri "$PG_URI/$tdb" --dest-table public.supervision --incremental-strategy merge
             --incremental-key updated_at --primary-key id --no-load-timestamp)
        if [ "$kind" = my ]; then
            # Without it ingestr ALTERs the target's boolean is_public to text
            # (Warning: column "is_public": type widened to string).
            CMD+=(--columns is_public:boolean)
        fi
        case $run in
        full) NOTE="staging schema _bruin_staging left in the target"
              if [ "$kind" = my ]; then
                  NOTE="needs --columns is_public:boolean (else it alters the target's is_public boolean→text: tinyint(1) read as a number); $NOTE"
              fi ;;
        incr) NOTE="keeps no state between runs: reads and upserts all $ROWS rows again" ;;
        since)
            # What a cron wrapper around ingestr has to do: ask the target where it stands.
            CMD=(bash -c 'since=$(psql -X -At "$1" -c "SELECT max(updated_at) FROM supervision") && shift && exec "$@" --interval-start "$since"'
                 peers "$PGURL/$tdb" "${CMD[@]}")
            NOTE="--interval-start = max(updated_at) of the target, asked by a wrapper inside the timing" ;;
        esac ;;
    sling)
        if [ "$kind" = pg ]; then src="$PG_URI/$sdb?sslmode=disable" stream=public.supervision; else src="$MYURL/$sdb" stream="$sdb.supervision"; fi
        CMD=("$SLING" run --src-conn "$src" --src-stream "$stream" --tgt-conn "$PG_URI/$tdb?sslmode=disable"
             --tgt-object public.supervision --mode incremental --primary-key id --update-key updated_at)
        if [ "$run" = incr ]; then NOTE="checkpoint = max(updated_at) read from the target"; fi
        if [ "$kind" = my ]; then
            # Without it: pq: column "is_public" is of type boolean but expression is of type smallint
            CMD+=(--columns '{"is_public": "bool"}')
            NOTE="needs --columns '{\"is_public\": \"bool\"}' (tinyint(1) otherwise goes as smallint and the upsert fails)"
        fi ;;
    dlt-arrow|dlt-sqlalchemy)
        local backend=${tool#dlt-}
        if [ "$backend" = arrow ]; then backend=pyarrow; fi
        if [ "$kind" = pg ]; then src="$SA_PG/$sdb"; else src="$SA_MY/$sdb"; fi
        CMD=("$PY" "$WORK/dlt_sync.py" "$src" supervision "$PGURL/$tdb" "$backend" "$pipe" "$DLT_PIPELINES")
        case $run in
        full) NOTE="merge = delete-insert through schema public_staging; _dlt_* tables in the target" ;;
        incr) NOTE="last updated_at kept in the pipeline state" ;;
        esac
        if [ "$kind" = my ]; then
            NOTE="tinyint(1) mapped to Boolean by a table_adapter_callback (else: column \"is_public\" is of type boolean but expression is of type bigint)"
        fi ;;
    esac
}

# run_tool NAME: run CMD under lib.sh's measure without dying; sets SECS, RSS_MB or ERR.
run_tool() {
    ERR=""
    if ( measure "$1" "${CMD[@]}" ) 2>"$WORK/$1.measure"; then
        read -r SECS KB _ <"$WORK/$1.time"
        RSS_MB=$(( (KB + 1023) / 1024 ))
        printf '   %s: %ss, %s MB\n' "$1" "$SECS" "$RSS_MB" >&2
        return 0
    fi
    SECS="" RSS_MB=""
    # The line that says why: the first of a Go driver (sling: later ones only say "transaction
    # is aborted"), else the last error or exception line (dlt's is the final one of its traceback).
    local log
    log=$(cat "$WORK/$1.err" "$WORK/$1.out" 2>/dev/null | sed 's/\x1b\[[0-9;]*m//g')
    ERR=$(grep -m1 -E 'pq: |dial tcp|Error 1[0-9]{3}' <<<"$log" || true)
    [ -n "$ERR" ] || ERR=$(grep -E 'Error|ERROR|Exception|error:' <<<"$log" \
                           | grep -vE '^\s*(File |Traceback|raise |\^)' | tail -n 1 || true)
    [ -n "$ERR" ] || ERR=$(grep -v '^\s*$' <<<"$log" | tail -n 1 || true)
    ERR=$(sed 's/^ *//' <<<"$ERR" | cut -c1-240)
    printf '   %s FAILED: %s (all output in %s)\n' "$1" "$ERR" "$WORK/$1.err" >&2
    return 1
}

# The target's columns that are not as pg_ddl made them (+added, -missing, name→new type).
col_types() {
    pgval "$1" "SELECT a.attname || '|' || format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
                WHERE a.attrelid = 'public.supervision'::regclass AND a.attnum > 0 AND NOT a.attisdropped"
}
schema_drift() { # TARGET_DB
    awk -F'|' 'NR == FNR { want[$1] = $2; next }
               { seen[$1] = 1
                 if (!($1 in want)) out = out sep "+" $1; else if (want[$1] != $2) out = out sep $1 "→" $2
                 if (out != "") sep = ", " }
               END { for (c in want) if (!(c in seen)) { out = out sep "-" c; sep = ", " }; print out }' \
        <(col_types fdb_peer_src) <(col_types "$1" 2>/dev/null || true)
}

# check EXPECTED TARGET_DB: lib.sh's checksum and `same`; sets CHK ("ok" or why not).
check() {
    local got drift
    got=$(pg_sum "$2" supervision 2>/dev/null) || got="no table"
    drift=$(schema_drift "$2")
    if ( same "$TOOL $RUN" "$1" "$got" ) 2>/dev/null; then
        CHK="ok"
        # The canonical text can survive a changed type (text '1' reads as 1): say so.
        if [[ "$drift" == *→* || "$drift" == *-* ]]; then CHK="values equal, but the target's columns changed"; fi
        printf '   checksum %s %s equal (%s)\n' "$TOOL" "$RUN" "$got" >&2
    else
        CHK="checksum differs: $got vs source $1"
        [ -z "$drift" ] || CHK="$CHK (target columns changed: $drift)"
        printf '   %s\n' "$CHK" >&2
    fi
    [ -z "$drift" ] || NOTE="${NOTE:+$NOTE; }target columns: $drift"
}

result() { # WORKLOAD: one line of the table from SECS RSS_MB ERR CHK NOTE
    if [ -n "$ERR" ]; then
        record "$TOOL" "$1" "—" "—" "FAILED: $ERR"$'\t'"$NOTE"   # no empty fields: read would merge tabs
    else
        record "$TOOL" "$1" "$SECS" "$RSS_MB" "$CHK"$'\t'"$NOTE"
    fi
}

update_source() { # DB: bench.sh's UPDATE of CHANGED rows
    local step=$(( ROWS / CHANGED )) since n
    since=$(pgval "$1" "SELECT now()")
    psqlq "$1" -c "UPDATE supervision SET updated_at = clock_timestamp(), version = version + 1,
        remark = coalesce(remark, '') || '（复查）', penalty_amount = coalesce(penalty_amount, 0) + 1
        WHERE id % $step = 0"
    n=$(pgval "$1" "SELECT count(*) FROM supervision WHERE updated_at >= '$since'")
    [ "$n" -eq "$CHANGED" ] || die "expected $CHANGED changed rows, found $n (make ROWS a multiple of CHANGED)"
}

# --- dataset ---------------------------------------------------------------------------------
say "generating $ROWS supervision records in PostgreSQL (fdb_peer_src)"
PG_DBS+=(fdb_peer_src)
quiet pg_fresh fdb_peer_src
pg_ddl supervision | psqlq fdb_peer_src
if ! pgval fdb_peer_src "SELECT repeat('x', 2::bigint)" >/dev/null 2>&1; then
    # lib.sh's generator calls repeat(text, i % 4) with a bigint i; PostgreSQL only has
    # repeat(text, integer). This overload (in the source database only) lets it run unchanged.
    psqlq fdb_peer_src -c "CREATE FUNCTION repeat(text, bigint) RETURNS text LANGUAGE sql IMMUTABLE
        AS 'SELECT pg_catalog.repeat(\$1, \$2::int)'"
fi
start=$(date +%s.%N)
pg_generate fdb_peer_src supervision 1 "$ROWS"
psqlq fdb_peer_src -c "VACUUM ANALYZE supervision"
printf '   %s rows, %s, generated in %.1fs\n' "$ROWS" \
    "$(pgval fdb_peer_src "SELECT pg_size_pretty(pg_total_relation_size('supervision'))")" \
    "$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { print e - s }')" >&2
SRC_SUM=$(pg_sum fdb_peer_src supervision)

if wants my2pg; then
    say "loading the dataset into MariaDB (fdb_peer_my)"
    MY_DBS+=(fdb_peer_my)
    my_fresh fdb_peer_my
    my_ddl supervision | myq fdb_peer_my
    psql -X -q "$PGURL/fdb_peer_src" -c "\\copy (SELECT $COLS FROM supervision) TO '$WORK/supervision.tsv'"
    # PostgreSQL's text format writes booleans as t/f; MariaDB wants 1/0 (column 14).
    awk -F'\t' 'BEGIN { OFS = "\t" } { if ($14 == "t") $14 = 1; else if ($14 == "f") $14 = 0; print }' \
        "$WORK/supervision.tsv" >"$WORK/supervision.my.tsv"
    myq fdb_peer_my --local-infile=1 -e "LOAD DATA LOCAL INFILE '$WORK/supervision.my.tsv' INTO TABLE supervision CHARACTER SET utf8mb4"
    rm -f "$WORK/supervision.tsv" "$WORK/supervision.my.tsv"
    MY_SUM=$(my_sum fdb_peer_my supervision)
    same "MariaDB copy of the dataset" "$SRC_SUM" "$MY_SUM"
fi

# --- the runs ----------------------------------------------------------------------------------
for TOOL in $TOOLS; do
    if wants full || wants incr; then
        say "$TOOL: full PostgreSQL -> PostgreSQL, $ROWS rows"
        pg_new fdb_peer_src_t fdb_peer_src
        pg_new fdb_peer_tgt
        RUN=full
        tool_cmd "$TOOL" pg fdb_peer_src_t fdb_peer_tgt full "peers_${TOOL//-/_}_pg"
        full_ok=1
        if run_tool "${TOOL}_full"; then check "$SRC_SUM" fdb_peer_tgt; else full_ok=0; fi
        if wants full; then
            result "full PG→PG $ROWS rows"
        else
            printf '   (set-up for incr, not in the table)\n' >&2
        fi

        if wants incr; then
            runs="incr"
            if [ "$TOOL" = ingestr ]; then runs="incr since"; fi
            for RUN in $runs; do
                label="incremental $CHANGED of $ROWS"
                [ "$RUN" = since ] && label="$label, --interval-start"
                if [ "$full_ok" = 0 ]; then
                    ERR="not run: the full run failed" NOTE=""
                    result "$label"
                    continue
                fi
                say "$TOOL: $label"
                update_source fdb_peer_src_t
                tool_cmd "$TOOL" pg fdb_peer_src_t fdb_peer_tgt "$RUN" "peers_${TOOL//-/_}_pg"
                if run_tool "${TOOL}_$RUN"; then check "$(pg_sum fdb_peer_src_t supervision)" fdb_peer_tgt; fi
                result "$label"
            done
        fi
        pg_drop fdb_peer_tgt
        pg_drop fdb_peer_src_t
    fi

    if wants my2pg; then
        say "$TOOL: full MariaDB -> PostgreSQL, $ROWS rows"
        pg_new fdb_peer_tgt
        RUN=my2pg
        tool_cmd "$TOOL" my fdb_peer_my fdb_peer_tgt full "peers_${TOOL//-/_}_my"
        if run_tool "${TOOL}_my2pg"; then check "$MY_SUM" fdb_peer_tgt; fi
        result "full MariaDB→PG $ROWS rows"
        pg_drop fdb_peer_tgt
    fi
done

# --- table -------------------------------------------------------------------------------------
say "results ($(nproc) cores, $(free -g | awk '/Mem:/ { print $2 }') GiB, $(psql -X -At "$PGURL/postgres" -c 'SHOW server_version' | cut -d' ' -f1) / MariaDB $(myval mysql 'SELECT version()' | cut -d- -f1); $VERSIONS${INSTALL_S:+; installed in ${INSTALL_S}s})"
{
    printf '| tool | workload | seconds | peak RSS | checksum | notes |\n'
    printf '| --- | --- | ---: | ---: | --- | --- |\n'
    while IFS=$'\t' read -r tool what secs mb chk note; do
        [ "$secs" = "—" ] || secs="$secs s" mb="$mb MB"
        printf '| %s | %s | %s | %s | %s | %s |\n' "$tool" "$what" "$secs" "$mb" "${chk//|/\\|}" "${note//|/\\|}"
    done <"$RESULTS"
    printf '\nPeak RSS: /usr/bin/time %%M, the largest single process of the run (not a sum over\n'
    printf 'processes; database servers not counted). Compare seconds with bench.sh'"'"'s COPY limit on\n'
    printf 'the same machine and ROWS; absolute numbers are this machine'"'"'s.\n'
} | tee "$WORK/results.md"
