# Shared by bench/bench.sh and bench/peers.sh: settings, helpers, the dataset (DDL,
# deterministic generator) and the cross-engine checksum. Source it; it changes nothing itself.

PGURL=${PGURL:-postgres://postgres@127.0.0.1:5432}
MYSQL_ARGS=(-uroot -h127.0.0.1 -P3306 --default-character-set=utf8mb4)

# fresh_work DIR: an empty work directory with an empty results file.
fresh_work() {
    WORK=$1
    rm -rf "$WORK"
    mkdir -p "$WORK"
    RESULTS="$WORK/results.tsv"
    : >"$RESULTS"
}

say() { printf '\n== %s\n' "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }
psqlq() { local db=$1; shift; psql -X -q -v ON_ERROR_STOP=1 "$PGURL/$db" "$@"; }
pgval() { psql -X -At -v ON_ERROR_STOP=1 "$PGURL/$1" -c "$2"; }
myq() { local db=$1; shift; mariadb "${MYSQL_ARGS[@]}" "$db" "$@"; }
myval() { mariadb "${MYSQL_ARGS[@]}" -N -B "$1" -e "$2"; }

command -v psql >/dev/null || die "psql not found"
command -v mariadb >/dev/null || die "mariadb client not found"
[ -x /usr/bin/time ] || die "/usr/bin/time not found (Debian package: time)"

# --- timing -------------------------------------------------------------------------------
# measure NAME CMD...: run CMD under /usr/bin/time; sets SECS, RSS_MB and the CPU seconds USR, SYS.
measure() {
    local name=$1; shift
    # Start every measurement from a clean buffer state: no checkpoint half way through.
    psql -X -q "$PGURL/postgres" -c CHECKPOINT
    /usr/bin/time -f '%e %M %U %S' -o "$WORK/$name.time" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" || {
        cat "$WORK/$name.err" >&2
        die "$name failed (output in $WORK/$name.err)"
    }
    read -r SECS KB USR SYS <"$WORK/$name.time"
    RSS_MB=$(( (KB + 1023) / 1024 ))
}

record() { printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$RESULTS"; }

# --- schema and data -----------------------------------------------------------------------
# SHAPE: how the keys and change times of the dataset lie, as front-end tables have them.
#   time       bigint key; change times rise with the keys (rows appended, never updated)
#   scattered  bigint key; change times scattered against the keys (rows updated after they
#              were inserted, in no order of their keys)
#   text       key record_no, a varchar code (JC + date + number), in another order than
#              the change times
#   composite  key (region_code, record_no)
SHAPE=${SHAPE:-time}
case "$SHAPE" in
    time | scattered) KEY_COLS="id" ;;
    text) KEY_COLS="record_no" ;;
    composite) KEY_COLS="region_code, record_no" ;;
    *) die "SHAPE=$SHAPE: use time, scattered, text or composite" ;;
esac
# The change time of row i.
if [ "$SHAPE" = scattered ]; then
    UPDATED_AT="timestamp '2019-01-01 09:00:00' + ((i * 7919) % 1000003) * interval '73 seconds' + (i % 997) * interval '1 microsecond'"
else
    UPDATED_AT="timestamp '2019-01-01 09:00:00' + i * interval '73 seconds' + (i % 997) * interval '1 microsecond'"
fi
COLS="id, record_no, uscc, org_name, legal_person, region_code, address, category, inspector,
      inspected_at, result_code, penalty_amount, remark, is_public, created_at, updated_at, version"

pg_ddl() { # TABLE [EXTRA]
    cat <<SQL
CREATE TABLE $1 (
    id             bigint NOT NULL,
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
    version        integer NOT NULL${2:-},
    PRIMARY KEY ($KEY_COLS)
);
CREATE INDEX ${1}_updated ON $1 (updated_at);
SQL
}

my_ddl() {
    cat <<SQL
CREATE TABLE $1 (
    id             bigint NOT NULL,
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
    PRIMARY KEY ($KEY_COLS),
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
                 || '，已责令整改。' || repeat('复查意见：按期完成。', (i % 4)::int) END,
       i % 2 = 0,
       timestamp '2019-01-01 08:00:00' + i * interval '73 seconds' + (i % 1000) * interval '1 microsecond',
       $UPDATED_AT,
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

pg_fresh() { psql -X -q "$PGURL/postgres" -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1"; }
my_fresh() { mariadb "${MYSQL_ARGS[@]}" -e "DROP DATABASE IF EXISTS $1; CREATE DATABASE $1 CHARACTER SET utf8mb4"; }

# The key columns as a TOML list: ["region_code", "record_no"].
key_list() { echo "[$(echo "$KEY_COLS" | sed 's/\([a-z_][a-z_]*\)/"\1"/g')]"; }

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
source = "$4"
key = $(key_list)
watermark = { kind = "timestamp", column = "updated_at" }
${5:-}
TOML
}
