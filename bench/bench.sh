#!/usr/bin/env bash
# frontdb-agent benchmark: the agent against the databases' own bulk paths, in the same run.
#
#   bench/bench.sh                 # every scenario, 1,000,000 rows (about 5 minutes)
#   ROWS=50000 BIG=0 RT_SECONDS=10 bench/bench.sh     # a smoke run
#   SCENARIOS="full incr" bench/bench.sh              # some scenarios only
#
# Scenarios (each prints a line of the final table):
#   full      PostgreSQL -> PostgreSQL, ROWS rows, target with primary key and index, upserting;
#             limit: psql \copy (format binary) piped into psql \copy into the same target
#   incr      CHANGED rows updated among ROWS, one `once` (process start included);
#             limit: the same rows piped by \copy into an empty table of the same shape
#   realtime  a writer committing 10 rows every 20 ms (500 rows/s) for RT_SECONDS, the agent on
#             `realtime@1s`; commit-to-target latency p50/p99 from the target's arrival time
#   big       peak memory of a full exchange of BIG rows (no limit run)
#   my2pg     MariaDB -> PostgreSQL; limit: `mariadb --batch` export piped into \copy
#   pg2my     PostgreSQL -> MariaDB; limit: \copy export piped into LOAD DATA LOCAL INFILE
#
# Every agent run is followed by a checksum of source and target (count and the sum of a hash
# of every row's canonical text, the same on both engines); a mismatch fails the run.
# Needs: psql, mariadb, /usr/bin/time, cargo. Uses databases fdb_bench_* and drops them.
set -euo pipefail

ROWS=${ROWS:-1000000}
CHANGED=${CHANGED:-20000}
BIG=${BIG:-5000000}
RT_SECONDS=${RT_SECONDS:-60}
SCENARIOS=${SCENARIOS:-"full incr realtime my2pg pg2my big"}
PGURL=${PGURL:-postgres://postgres@127.0.0.1:5432}
MYSQL_ARGS=(-uroot -h127.0.0.1 -P3306 --default-character-set=utf8mb4)

cd "$(dirname "$0")/.."
ROOT=$(pwd)
WORK=${BENCH_DIR:-${TMPDIR:-/tmp}/frontdb-bench}
rm -rf "$WORK"
mkdir -p "$WORK"
RESULTS="$WORK/results.tsv"
: >"$RESULTS"

say() { printf '\n== %s\n' "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }
psqlq() { local db=$1; shift; psql -X -q -v ON_ERROR_STOP=1 "$PGURL/$db" "$@"; }
pgval() { psql -X -At -v ON_ERROR_STOP=1 "$PGURL/$1" -c "$2"; }
myq() { local db=$1; shift; mariadb "${MYSQL_ARGS[@]}" "$db" "$@"; }
myval() { mariadb "${MYSQL_ARGS[@]}" -N -B "$1" -e "$2"; }

command -v psql >/dev/null || die "psql not found"
command -v mariadb >/dev/null || die "mariadb client not found"
[ -x /usr/bin/time ] || die "/usr/bin/time not found (Debian package: time)"

say "building the agent (release)"
cargo build --release --quiet
AGENT="$ROOT/target/release/frontdb-agent"

# --- timing -------------------------------------------------------------------------------
# measure NAME CMD...: run CMD under /usr/bin/time; sets SECS and RSS_MB.
measure() {
    local name=$1; shift
    /usr/bin/time -f '%e %M' -o "$WORK/$name.time" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" || {
        cat "$WORK/$name.err" >&2
        die "$name failed (output in $WORK/$name.err)"
    }
    read -r SECS KB <"$WORK/$name.time"
    RSS_MB=$(( (KB + 1023) / 1024 ))
}

record() { printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$RESULTS"; }

# --- schema and data -----------------------------------------------------------------------
COLS="id, record_no, uscc, org_name, legal_person, region_code, address, category, inspector,
      inspected_at, result_code, penalty_amount, remark, is_public, created_at, updated_at, version"

pg_ddl() { # TABLE [EXTRA]
    cat <<SQL
CREATE TABLE $1 (
    id             bigint PRIMARY KEY,
    record_no      varchar(32) NOT NULL,
    uscc           char(18),
    org_name       varchar(200) NOT NULL,
    legal_person   varchar(50),
    region_code    char(6),
    address        varchar(300),
    category       varchar(20),
    inspector      varchar(50),
    inspected_at   timestamp(6),
    result_code    integer,
    penalty_amount numeric(14,2),
    remark         text,
    is_public      boolean,
    created_at     timestamp(6) NOT NULL,
    updated_at     timestamp(6) NOT NULL,
    version        integer NOT NULL${2:-}
);
CREATE INDEX ${1}_updated ON $1 (updated_at);
SQL
}

my_ddl() {
    cat <<SQL
CREATE TABLE $1 (
    id             bigint PRIMARY KEY,
    record_no      varchar(32) NOT NULL,
    uscc           char(18),
    org_name       varchar(200) NOT NULL,
    legal_person   varchar(50),
    region_code    char(6),
    address        varchar(300),
    category       varchar(20),
    inspector      varchar(50),
    inspected_at   datetime(6),
    result_code    int,
    penalty_amount decimal(14,2),
    remark         text,
    is_public      tinyint(1),
    created_at     datetime(6) NOT NULL,
    updated_at     datetime(6) NOT NULL,
    version        int NOT NULL,
    KEY ${1}_updated (updated_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
SQL
}

# Deterministic supervision records (监管记录) with Chinese text; ids FROM..TO.
pg_generate() { # DB TABLE FROM TO
    psqlq "$1" <<SQL
INSERT INTO $2
SELECT i,
       'JC' || to_char(date '2019-01-01' + (i % 1500)::int, 'YYYYMMDD') || lpad(i::text, 10, '0'),
       '91' || lpad((i % 999983)::text, 6, '0') || upper(substr(md5(i::text), 1, 10)),
       (ARRAY['哈尔滨','齐齐哈尔','牡丹江','佳木斯','大庆','鸡西','双鸭山','伊春'])[1 + i % 8]
         || (ARRAY['华兴','鑫源','龙江','北方','金穗','恒泰','盛达','宏远','瑞丰','永安'])[1 + (i / 8) % 10]
         || (ARRAY['食品','商贸','建材','医药','餐饮','物流','农业','科技'])[1 + (i / 80) % 8] || '有限公司',
       (ARRAY['王','李','张','刘','陈','杨','赵','黄','周','吴','徐','孙','马','朱','胡','郭','何','林','高','罗'])[1 + i % 20]
         || (ARRAY['伟','芳','娜','敏','静','丽','强','磊','军','洋','勇','艳','杰','娟','涛','明','超','秀英','华','平'])[1 + (i / 20) % 20],
       (ARRAY['230102','230103','230104','230108','230109','230110','230111','230112','230113','230123'])[1 + i % 10],
       '黑龙江省哈尔滨市' || (ARRAY['道里区','南岗区','道外区','平房区','松北区','香坊区','呼兰区','阿城区'])[1 + i % 8]
         || (ARRAY['中央大街','红军街','友谊路','学府路','长江路','和平路'])[1 + (i / 8) % 6] || (i % 999 + 1) || '号',
       (ARRAY['食品经营','药品零售','特种设备','餐饮服务','工业产品','计量器具'])[1 + i % 6],
       (ARRAY['赵建国','钱学明','孙丽华','李卫东','周晓燕','吴志刚','郑海涛','王秀兰'])[1 + i % 8],
       CASE WHEN i % 50 = 0 THEN NULL ELSE timestamp '2019-01-01' + i * interval '73 seconds' END,
       i % 5,
       CASE WHEN i % 7 = 0 THEN NULL ELSE ((i * 37) % 10000000) / 100.0 END,
       CASE WHEN i % 3 = 0 THEN NULL
            WHEN i % 1000 = 1 THEN E'含"引号"、''单引号''\t制表符和\\反斜杠'
            ELSE '检查发现' || (ARRAY['台账不全','标签不规范','证照过期','温控记录缺失','无明显问题'])[1 + i % 5]
                 || '，已责令整改。' || repeat('复查意见：按期完成。', i % 4) END,
       i % 2 = 0,
       timestamp '2019-01-01 08:00:00' + i * interval '73 seconds' + (i % 1000) * interval '1 microsecond',
       timestamp '2019-01-01 09:00:00' + i * interval '73 seconds' + (i % 997) * interval '1 microsecond',
       1
FROM generate_series($3::bigint, $4::bigint) AS i;
SQL
}

# The canonical text of a row, identical on both engines, and the checksum over a table.
PG_ROW="concat_ws('|', id, record_no, coalesce(uscc,'~'), org_name, coalesce(legal_person,'~'),
  coalesce(region_code,'~'), coalesce(address,'~'), coalesce(category,'~'), coalesce(inspector,'~'),
  coalesce(to_char(inspected_at,'YYYY-MM-DD HH24:MI:SS.US'),'~'), coalesce(result_code::text,'~'),
  coalesce(penalty_amount::text,'~'), coalesce(remark,'~'), coalesce(is_public::int::text,'~'),
  to_char(created_at,'YYYY-MM-DD HH24:MI:SS.US'), to_char(updated_at,'YYYY-MM-DD HH24:MI:SS.US'), version)"
MY_ROW="concat_ws('|', id, record_no, coalesce(uscc,'~'), org_name, coalesce(legal_person,'~'),
  coalesce(region_code,'~'), coalesce(address,'~'), coalesce(category,'~'), coalesce(inspector,'~'),
  coalesce(date_format(inspected_at,'%Y-%m-%d %H:%i:%s.%f'),'~'), coalesce(cast(result_code as char),'~'),
  coalesce(cast(penalty_amount as char),'~'), coalesce(remark,'~'), coalesce(cast(is_public as char),'~'),
  date_format(created_at,'%Y-%m-%d %H:%i:%s.%f'), date_format(updated_at,'%Y-%m-%d %H:%i:%s.%f'), version)"
pg_sum() { # DB TABLE
    pgval "$1" "SELECT count(*) || ':' || coalesce(sum(('x' || substr(h, 1, 8))::bit(32)::bigint), 0)
                || ':' || coalesce(sum(('x' || substr(h, 9, 8))::bit(32)::bigint), 0)
                FROM (SELECT md5($PG_ROW) AS h FROM $2) s"
}
my_sum() {
    myval "$1" "SELECT concat(count(*), ':', coalesce(sum(cast(conv(substr(h, 1, 8), 16, 10) as unsigned)), 0),
                ':', coalesce(sum(cast(conv(substr(h, 9, 8), 16, 10) as unsigned)), 0))
                FROM (SELECT md5($MY_ROW) AS h FROM $2) s"
}
same() { # WHAT A B
    [ "$2" = "$3" ] || die "$1: source and target differ: $2 vs $3"
    printf '   checksum %s equal (%s)\n' "$1" "$2" >&2
}

pg_fresh() { psql -X -q "$PGURL/postgres" -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1"; }
my_fresh() { mariadb "${MYSQL_ARGS[@]}" -e "DROP DATABASE IF EXISTS $1; CREATE DATABASE $1 CHARACTER SET utf8mb4"; }

# agent_config FILE SOURCE_URL TARGET_URL TABLE [extra table lines]
agent_config() {
    mkdir -p "$WORK/state-$(basename "$1" .toml)"
    cat >"$1" <<TOML
[agent]
id = "bench"
state_dir = "$WORK/state-$(basename "$1" .toml)"
timezone = "UTC"

[source]
url = "$2"

[exchange]
url = "$3"

[[table]]
name = "$4"
key = ["id"]
watermark = { kind = "timestamp", column = "updated_at" }
${5:-}
TOML
}

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
fi

# --- incremental -------------------------------------------------------------------------------
if wants incr; then
    step=$(( ROWS / CHANGED ))
    say "incremental: $CHANGED of $ROWS rows changed"
    since=$(pgval fdb_bench_src "SELECT now()")
    psqlq fdb_bench_src -c "UPDATE supervision SET updated_at = clock_timestamp(), version = version + 1,
        remark = coalesce(remark, '') || '（复查）', penalty_amount = coalesce(penalty_amount, 0) + 1
        WHERE id % $step = 0"
    n=$(pgval fdb_bench_src "SELECT count(*) FROM supervision WHERE updated_at >= '$since'")
    [ "$n" -eq "$CHANGED" ] || die "expected $CHANGED changed rows, found $n"
    pg_fresh fdb_bench_limit
    pg_ddl supervision | psqlq fdb_bench_limit
    measure copy_incr bash -c "psql -X -q '$PGURL/fdb_bench_src' -c \"\\copy (SELECT * FROM supervision WHERE updated_at >= '$since') TO STDOUT (FORMAT binary)\" \
        | psql -X -q '$PGURL/fdb_bench_limit' -c '\\copy supervision FROM STDIN (FORMAT binary)'"
    LIMIT_S=$SECS LIMIT_MB=$RSS_MB
    psql -X -q "$PGURL/postgres" -c "DROP DATABASE fdb_bench_limit"
    measure agent_incr "$AGENT" --config "$WORK/pg.toml" once
    same "agent" "$(pg_sum fdb_bench_src supervision)" "$(pg_sum fdb_bench_tgt supervision)"
    record "incremental ${CHANGED} of ${ROWS}" "$LIMIT_S" "$SECS" "$LIMIT_MB" "$RSS_MB"
fi
psql -X -q "$PGURL/postgres" -c "DROP DATABASE IF EXISTS fdb_bench_tgt"

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
    kill -TERM "$agent_pid"
    wait "$agent_pid" || die "the real-time agent did not stop cleanly (see $WORK/agent_rt.err)"
    read -r _ KB <"$WORK/agent_rt.time"
    RSS_MB=$(( (KB + 1023) / 1024 ))
    same "real time" "$(pg_sum fdb_bench_src rt)" "$(pg_sum fdb_bench_rt rt)"
    lat=$(pgval fdb_bench_rt "SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY d)::numeric, 3) || ' ' ||
        round(percentile_cont(0.99) WITHIN GROUP (ORDER BY d)::numeric, 3) || ' ' || round(max(d)::numeric, 3)
        FROM (SELECT extract(epoch FROM arrived_at - updated_at) AS d FROM rt) s")
    read -r P50 P99 PMAX <<<"$lat"
    record "real time 500 rows/s, latency p50 / p99 / max" "" "${P50}s / ${P99}s / ${PMAX}s" "" "$RSS_MB"
    psql -X -q "$PGURL/postgres" -c "DROP DATABASE fdb_bench_rt"
fi

# --- MariaDB -> PostgreSQL and PostgreSQL -> MariaDB -------------------------------------------
if wants my2pg || wants pg2my; then
    say "loading the dataset into MariaDB (fdb_bench_my)"
    my_fresh fdb_bench_my
    my_ddl supervision | myq fdb_bench_my
    psql -X -q "$PGURL/fdb_bench_src" -c "\\copy (SELECT $COLS) TO '$WORK/supervision.tsv'"
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
    measure copy_pg2my bash -c "psql -X -q '$PGURL/fdb_bench_src' -c \"\\copy (SELECT $(echo $COLS | sed 's/is_public/is_public::int/')) TO STDOUT\" \
        | mariadb ${MYSQL_ARGS[*]} --local-infile=1 fdb_bench_mylimit -e \"LOAD DATA LOCAL INFILE '/dev/stdin' INTO TABLE supervision CHARACTER SET utf8mb4\""
    LIMIT_S=$SECS LIMIT_MB=$RSS_MB
    same "\\copy | LOAD DATA" "$SRC_SUM" "$(my_sum fdb_bench_mylimit supervision)"
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
    record "full PG→PG ${BIG} rows" "" "$SECS" "" "$RSS_MB"
    psql -X -q "$PGURL/postgres" -c "DROP DATABASE fdb_bench_tgt"
fi
psql -X -q "$PGURL/postgres" -c "DROP DATABASE fdb_bench_src"

# --- table -------------------------------------------------------------------------------------
say "results ($(nproc) cores, $(free -g | awk '/Mem:/ { print $2 }') GiB, $(psql -X -At "$PGURL/postgres" -c 'SHOW server_version' | cut -d' ' -f1) / MariaDB $(myval mysql 'SELECT version()' | cut -d- -f1))"
{
    printf '| scenario | limit | agent | agent / limit | limit RSS | agent RSS |\n'
    printf '| --- | ---: | ---: | ---: | ---: | ---: |\n'
    while IFS=$'\t' read -r what limit agent lmb amb; do
        ratio=""
        if [ -n "$limit" ]; then
            ratio=$(awk -v a="$agent" -v l="$limit" 'BEGIN { printf "%.2f×", a / l }')
            limit="${limit} s"; agent="${agent} s"
        fi
        printf '| %s | %s | %s | %s | %s | %s MB |\n' "$what" "$limit" "$agent" "$ratio" \
            "${lmb:+$lmb MB}" "$amb"
    done <"$RESULTS"
} | tee "$WORK/results.md"
