#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit tests and integration tests against the real
# PostgreSQL and MariaDB servers. Starts them when they are not running; fails loudly when it
# cannot. Usage: scripts/test.sh [extra cargo test arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

PG_HOST=127.0.0.1 PG_PORT=5432
MY_HOST=127.0.0.1 MY_PORT=3306

say() { printf '==> %s\n' "$*"; }
die() { printf 'scripts/test.sh: %s\n' "$*" >&2; exit 1; }

pg_ready() { pg_isready -h "$PG_HOST" -p "$PG_PORT" -q 2>/dev/null; }
my_ready() {
    if command -v mariadb-admin >/dev/null; then mariadb-admin -h "$MY_HOST" -P "$MY_PORT" -uroot ping >/dev/null 2>&1
    else mysqladmin -h "$MY_HOST" -P "$MY_PORT" -uroot ping >/dev/null 2>&1; fi
}

wait_for() { # name check-function seconds
    local i
    for ((i = 0; i < $3; i++)); do "$2" && return 0; sleep 1; done
    return 1
}

start_postgres() {
    say "PostgreSQL is not answering on $PG_HOST:$PG_PORT; starting it"
    if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
        local v; v=$(ls /etc/postgresql | sort -V | tail -n 1)
        pg_ctlcluster --skip-systemctl-redirect "$v" main start || true
    elif command -v systemctl >/dev/null; then
        systemctl start postgresql || true
    fi
    wait_for PostgreSQL pg_ready 30 || die "PostgreSQL did not start on $PG_HOST:$PG_PORT. Start it (trust auth for user postgres) or set FRONTDB_TEST_PG."
}

start_mariadb() {
    say "MariaDB is not answering on $MY_HOST:$MY_PORT; starting it"
    if [ -x /usr/sbin/mariadbd ] && command -v start-stop-daemon >/dev/null; then
        # Its socket directory lives on a tmpfs and is gone after a reboot.
        install -d -o mysql -g mysql /run/mysqld 2>/dev/null || mkdir -p /run/mysqld || true
        start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || true
    elif command -v systemctl >/dev/null; then
        systemctl start mariadb || systemctl start mysql || true
    fi
    wait_for MariaDB my_ready 30 || die "MariaDB did not start on $MY_HOST:$MY_PORT. Start it (root with an empty password) or set FRONTDB_TEST_MYSQL."
}

if [ -z "${FRONTDB_TEST_PG:-}" ]; then
    command -v pg_isready >/dev/null || die "pg_isready not found: install the PostgreSQL client (postgresql-client)"
    pg_ready || start_postgres
    # Databases left behind by an interrupted run.
    psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -Atc \
        "SELECT 'DROP DATABASE \"' || datname || '\" WITH (FORCE);' FROM pg_database WHERE datname LIKE 'fdbt\_%'" postgres \
        | psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -q postgres >/dev/null || true
fi
if [ -z "${FRONTDB_TEST_MYSQL:-}" ]; then
    command -v mariadb-admin >/dev/null || command -v mysqladmin >/dev/null || die "mariadb-admin not found: install the MariaDB client (mariadb-client)"
    my_ready || start_mariadb
    client=$(command -v mariadb || command -v mysql)
    "$client" -h "$MY_HOST" -P "$MY_PORT" -uroot -N -e \
        "SELECT CONCAT('DROP DATABASE \`', schema_name, '\`;') FROM information_schema.schemata WHERE schema_name LIKE 'fdbt\\_%'" \
        | "$client" -h "$MY_HOST" -P "$MY_PORT" -uroot >/dev/null || true
fi
say "PostgreSQL and MariaDB are up"

# The Debian package test needs cargo-deb.
if ! command -v cargo-deb >/dev/null; then
    say "installing cargo-deb (once) for the package test"
    cargo install cargo-deb --locked || die "cannot install cargo-deb (crates.io unreachable?)"
fi

say "cargo fmt --check"
cargo fmt --check
say "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings
say "cargo test"
cargo test "$@"
say "all tests passed"
