#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit tests and integration tests against the real
# PostgreSQL and MariaDB servers.
#
# The tests expect PostgreSQL on 127.0.0.1:5432 (user postgres, trust authentication) and
# MariaDB on 127.0.0.1:3306 (root, empty password). Servers that already answer that way are
# used as they are. Otherwise, run as root on Debian or Ubuntu, this script installs the
# missing packages (apt-get), gives the tests that access, and starts the servers (without
# systemd, as in a container); where it cannot, it says what to do.
# FRONTDB_TEST_PG / FRONTDB_TEST_MYSQL point the tests at other servers, which are then left
# alone. FRONTDB_TEST_SEED repeats the random draws of a seeded test.
#
# Usage: scripts/test.sh [extra cargo test arguments]
set -euo pipefail

PG_HOST=127.0.0.1 PG_PORT=5432 PG_CLUSTER=main
MY_HOST=127.0.0.1 MY_PORT=3306 MY_SOCKET=/run/mysqld/mysqld.sock

say() { printf '==> %s\n' "$*"; }
die() { printf 'scripts/test.sh: %s\n' "$*" >&2; exit 1; }

wait_for() { # name check-function seconds
    local i
    for ((i = 0; i < $3; i++)); do "$2" && return 0; sleep 1; done
    return 1
}

is_root() { [ "$(id -u)" -eq 0 ]; }

# Install Debian/Ubuntu packages (`what` names them for people), or stop and say how.
install_packages() { # what package...
    local what=$1
    shift
    if ! command -v apt-get >/dev/null; then
        die "$what is not installed, and without apt-get this script cannot install it. Install $what, give the tests the access described at the top of scripts/test.sh, or point FRONTDB_TEST_PG / FRONTDB_TEST_MYSQL at servers that have it."
    fi
    if ! is_root; then
        die "$what is not installed. Run scripts/test.sh as root once (it installs and configures it), or yourself: sudo apt-get install $*"
    fi
    say "installing $what: $*"
    if [ -z "${apt_updated:-}" ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -q || die "apt-get update failed"
        apt_updated=1
    fi
    # A UTF-8 locale, so that the cluster the PostgreSQL package creates is UTF-8.
    DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 LC_ALL=C.UTF-8 \
        apt-get install -y -q --no-install-recommends "$@" || die "apt-get install $* failed"
}

# --- PostgreSQL ---------------------------------------------------------------------------

pg_ready() { pg_isready -h "$PG_HOST" -p "$PG_PORT" -q 2>/dev/null; }
pg_access() { psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -w -Atqc 'SELECT 1' postgres >/dev/null 2>&1; }
pg_server_installed() { compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null; }
pg_version() { # the newest installed server
    local bins
    bins=$(compgen -G '/usr/lib/postgresql/*/bin/postgres') || return 1
    sed 's|^/usr/lib/postgresql/||; s|/bin/postgres$||' <<<"$bins" | sort -V | tail -n 1
}
pg_conf() { echo "/etc/postgresql/$(pg_version)/$PG_CLUSTER"; }

# Trust for user postgres from 127.0.0.1 (first in pg_hba.conf: the first matching line
# decides), and a listener on 127.0.0.1. Needs root; the cluster's files are Debian's.
configure_postgres() {
    local conf
    conf=$(pg_conf)
    local hba=$conf/pg_hba.conf
    [ -f "$hba" ] || die "no $hba: cannot configure PostgreSQL's access here"
    if ! grep -Eq "^host[[:space:]]+all[[:space:]]+postgres[[:space:]]+$PG_HOST/32[[:space:]]+trust" "$hba"; then
        say "PostgreSQL: trusting user postgres from $PG_HOST ($hba)"
        # Rewritten in place, so that the file keeps its owner and mode.
        local rest
        rest=$(cat "$hba")
        printf '%s\n' "# scripts/test.sh (frontdb-agent): the tests connect as postgres without a password" \
            "host all postgres $PG_HOST/32 trust" "$rest" >"$hba"
    fi
    local listen
    listen=$(pg_conftool -s "$(pg_version)" "$PG_CLUSTER" show listen_addresses 2>/dev/null || echo localhost)
    case "$listen" in
        *localhost* | *"$PG_HOST"* | *'*'*) ;;
        *)
            say "PostgreSQL: listening on $PG_HOST as well ($conf/conf.d/frontdb-test.conf)"
            mkdir -p "$conf/conf.d"
            printf "listen_addresses = '%s, %s'\n" "$listen" "$PG_HOST" >"$conf/conf.d/frontdb-test.conf"
            ;;
    esac
}

start_postgres() {
    say "PostgreSQL is not answering on $PG_HOST:$PG_PORT; starting it"
    if command -v pg_ctlcluster >/dev/null && pg_server_installed; then
        is_root || die "PostgreSQL is installed but not running. Start it as root: pg_ctlcluster $(pg_version) $PG_CLUSTER start (or run scripts/test.sh as root)"
        local v
        v=$(pg_version)
        if [ ! -d "/etc/postgresql/$v/$PG_CLUSTER" ]; then
            say "creating the PostgreSQL $v cluster $PG_CLUSTER on port $PG_PORT"
            LANG=C.UTF-8 LC_ALL=C.UTF-8 pg_createcluster --locale C.UTF-8 --port "$PG_PORT" "$v" "$PG_CLUSTER" >/dev/null ||
                die "pg_createcluster $v $PG_CLUSTER failed"
        fi
        local port
        port=$(pg_conftool -s "$v" "$PG_CLUSTER" show port 2>/dev/null || echo "$PG_PORT")
        [ "$port" = "$PG_PORT" ] || die "the PostgreSQL cluster $v/$PG_CLUSTER uses port $port, the tests $PG_PORT: set port = $PG_PORT in /etc/postgresql/$v/$PG_CLUSTER/postgresql.conf, or set FRONTDB_TEST_PG=postgres://postgres@$PG_HOST:$port"
        configure_postgres
        # No systemd in a container: start the cluster directly.
        pg_ctlcluster --skip-systemctl-redirect "$v" "$PG_CLUSTER" start || true
    elif command -v systemctl >/dev/null; then
        systemctl start postgresql || true
    fi
    wait_for PostgreSQL pg_ready 30 ||
        die "PostgreSQL does not answer on $PG_HOST:$PG_PORT (its log: /var/log/postgresql/; listen_addresses and port: /etc/postgresql/). Start it, listening there, with trust authentication for user postgres from $PG_HOST, or set FRONTDB_TEST_PG."
}

ensure_postgres() {
    if ! command -v pg_isready >/dev/null || ! command -v psql >/dev/null; then
        install_packages "the PostgreSQL client" postgresql-client
    fi
    if ! pg_ready; then
        pg_server_installed || install_packages PostgreSQL postgresql postgresql-client
        start_postgres
    fi
    if ! pg_access; then
        if ! is_root || ! pg_server_installed || [ ! -d "$(pg_conf)" ]; then
            die "PostgreSQL answers on $PG_HOST:$PG_PORT but refuses user postgres without a password. Add this line at the top of its pg_hba.conf and reload it (or run scripts/test.sh as root on the server's machine): host all postgres $PG_HOST/32 trust"
        fi
        configure_postgres
        pg_ctlcluster --skip-systemctl-redirect "$(pg_version)" "$PG_CLUSTER" reload ||
            die "cannot reload PostgreSQL"
        wait_for "PostgreSQL access" pg_access 10 ||
            die "PostgreSQL still refuses user postgres from $PG_HOST (see $(pg_conf)/pg_hba.conf)"
    fi
    # The tests' databases are copies of template1, and hold Chinese text.
    local encoding
    encoding=$(psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -w -Atc \
        "SELECT pg_encoding_to_char(encoding) FROM pg_database WHERE datname = 'template1'" postgres)
    [ "$encoding" = UTF8 ] ||
        die "PostgreSQL's new databases are $encoding; the tests need UTF8. Create its cluster with a UTF-8 locale (pg_createcluster --locale C.UTF-8 ...), or point FRONTDB_TEST_PG at one that has it."
}

# --- MariaDB ------------------------------------------------------------------------------

my_client() { command -v mariadb || command -v mysql; }
my_admin() { command -v mariadb-admin || command -v mysqladmin; }
# The server answers, even if only to refuse the user (1045) or the host (1130).
my_ready() {
    local out
    out=$("$(my_admin)" -h "$MY_HOST" -P "$MY_PORT" --connect-timeout=2 -uroot ping 2>&1) && return 0
    case $out in *1045* | *1130* | *'Access denied'* | *'not allowed to connect'*) return 0 ;; esac
    return 1
}
my_access() { "$(my_client)" -h "$MY_HOST" -P "$MY_PORT" --connect-timeout=5 -uroot -N -e 'SELECT 1' >/dev/null 2>&1; }
my_server() { command -v mariadbd || ls /usr/sbin/mariadbd 2>/dev/null; }

# Root with an empty password over TCP. Debian's root@localhost logs in only through the
# socket as the system's root (unix_socket); keep that and allow the empty password too, and
# the same for root@127.0.0.1, which a TCP connection is when names are not resolved.
configure_mariadb() {
    say "MariaDB: root with an empty password over TCP"
    "$(my_client)" --protocol=socket -S "$MY_SOCKET" -uroot <<'SQL' || die "cannot configure MariaDB's root user through $MY_SOCKET"
ALTER USER root@localhost IDENTIFIED VIA mysql_native_password USING PASSWORD('') OR unix_socket;
CREATE USER IF NOT EXISTS root@'127.0.0.1';
ALTER USER root@'127.0.0.1' IDENTIFIED VIA mysql_native_password USING PASSWORD('');
GRANT ALL PRIVILEGES ON *.* TO root@'127.0.0.1' WITH GRANT OPTION;
FLUSH PRIVILEGES;
SQL
}

start_mariadb() {
    say "MariaDB is not answering on $MY_HOST:$MY_PORT; starting it"
    local server
    server=$(my_server || true)
    if [ -n "$server" ] && command -v start-stop-daemon >/dev/null; then
        is_root || die "MariaDB is installed but not running. Start it as root (or run scripts/test.sh as root): start-stop-daemon --start --background --exec $server -- --user=mysql"
        # Its socket directory lives on a tmpfs and is gone after a reboot.
        install -d -o mysql -g mysql "$(dirname "$MY_SOCKET")" 2>/dev/null || mkdir -p "$(dirname "$MY_SOCKET")" || true
        if [ ! -d /var/lib/mysql/mysql ]; then
            say "initialising MariaDB's data directory"
            mariadb-install-db --user=mysql >/dev/null || die "mariadb-install-db failed"
        fi
        # No systemd in a container: start the server directly.
        start-stop-daemon --start --oknodo --background --exec "$server" -- --user=mysql || true
    elif command -v systemctl >/dev/null; then
        systemctl start mariadb || systemctl start mysql || true
    fi
    wait_for MariaDB my_ready 30 ||
        die "MariaDB did not start on $MY_HOST:$MY_PORT (its log: /var/log/mysql/). Start it, with user root and an empty password over TCP, or set FRONTDB_TEST_MYSQL."
}

ensure_mariadb() {
    if ! my_client >/dev/null || ! my_admin >/dev/null; then
        install_packages "the MariaDB client" mariadb-client
    fi
    if ! my_ready; then
        my_server >/dev/null || install_packages MariaDB mariadb-server mariadb-client
        start_mariadb
    fi
    if ! my_access; then
        if ! is_root || [ ! -S "$MY_SOCKET" ]; then
            die "MariaDB answers on $MY_HOST:$MY_PORT but refuses root without a password. As its administrator, run: ALTER USER root@localhost IDENTIFIED VIA mysql_native_password USING PASSWORD('') OR unix_socket; CREATE USER IF NOT EXISTS root@'127.0.0.1'; ALTER USER root@'127.0.0.1' IDENTIFIED VIA mysql_native_password USING PASSWORD(''); GRANT ALL PRIVILEGES ON *.* TO root@'127.0.0.1' WITH GRANT OPTION; (or run scripts/test.sh as root on the server's machine)"
        fi
        configure_mariadb
        my_access || die "MariaDB still refuses root without a password over TCP on $MY_HOST:$MY_PORT"
    fi
}

# --- OpenSSH ------------------------------------------------------------------------------

# The file exchange's SFTP test (tests/it/files_sftp.rs) starts an sshd of its own on a
# loopback port, with its own host key and authorized_keys: it needs the server, the sftp
# client and ssh-keygen, not a running service.
ensure_openssh() {
    if [ ! -x /usr/sbin/sshd ] || ! command -v sftp >/dev/null || ! command -v ssh-keygen >/dev/null; then
        install_packages "OpenSSH (server and client, for the SFTP test)" openssh-server openssh-client
    fi
}

# The console's browser test (tests/it/console/browser.rs) drives Debian's chromium, headless,
# over the DevTools protocol; fonts-noto-cjk draws its Chinese pages in the screenshots.
ensure_chromium() {
    if ! command -v chromium >/dev/null; then
        install_packages "chromium (for the console's browser test)" chromium fonts-noto-cjk
    fi
}

# The TLS test (tests/it/tls.rs) makes a CA of its own with openssl and starts a PostgreSQL
# of its own (initdb, postgres) with it: the server binaries, even when FRONTDB_TEST_PG
# points elsewhere.
ensure_tls_test() {
    command -v openssl >/dev/null || install_packages "openssl (for the TLS test's CA)" openssl
    pg_server_installed || install_packages "PostgreSQL (for the TLS test's own server)" postgresql
}

# --- ODBC ---------------------------------------------------------------------------------

# The `odbc://` engine (built with `--features odbc`) links unixODBC, and its live tests
# (tests/it/odbc_live.rs) reach the local PostgreSQL and MariaDB through Debian's own ODBC
# drivers, which register themselves in /etc/odbcinst.ini as "PostgreSQL Unicode" and
# "MariaDB Unicode".
odbc_driver() { odbcinst -q -d -n "$1" >/dev/null 2>&1; }
ensure_odbc() {
    if [ ! -e /usr/include/sql.h ] || ! command -v odbcinst >/dev/null ||
        ! odbc_driver "PostgreSQL Unicode" || ! odbc_driver "MariaDB Unicode"; then
        install_packages "unixODBC and the PostgreSQL and MariaDB ODBC drivers" \
            unixodbc unixodbc-dev odbc-postgresql odbc-mariadb
    fi
    odbc_driver "PostgreSQL Unicode" || die "odbc-postgresql is installed but \"PostgreSQL Unicode\" is not in /etc/odbcinst.ini (odbcinst -q -d lists the drivers)"
    odbc_driver "MariaDB Unicode" || die "odbc-mariadb is installed but \"MariaDB Unicode\" is not in /etc/odbcinst.ini (odbcinst -q -d lists the drivers)"
}

# --- Python and aiosmtpd ------------------------------------------------------------------

# The alert test (tests/it/alerts.rs) runs a webhook receiver (Python's standard library) and
# an SMTP server with STARTTLS and a login (aiosmtpd) of its own on loopback.
ensure_aiosmtpd() {
    command -v python3 >/dev/null || install_packages "Python (for the alert test)" python3
    python3 -c 'import aiosmtpd' 2>/dev/null && return 0
    say "installing aiosmtpd (for the alert test's SMTP server)"
    python3 -m pip install --quiet aiosmtpd 2>/dev/null ||
        install_packages "aiosmtpd (for the alert test)" python3-aiosmtpd
    python3 -c 'import aiosmtpd' ||
        die "python3 cannot import aiosmtpd (the alert test's SMTP server): pip install aiosmtpd, or apt-get install python3-aiosmtpd"
}

# --- The suite ----------------------------------------------------------------------------

main() {
    cd "$(dirname "$0")/.."
    # The tests signal the agent with kill(1), which minimal images lack.
    type -P kill >/dev/null || install_packages "kill(1)" procps
    ensure_openssh
    ensure_chromium
    ensure_tls_test
    ensure_odbc
    ensure_aiosmtpd
    if [ -z "${FRONTDB_TEST_PG:-}" ]; then
        ensure_postgres
        # Databases left behind by an interrupted run.
        psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -Atc \
            "SELECT 'DROP DATABASE \"' || datname || '\" WITH (FORCE);' FROM pg_database WHERE datname LIKE 'fdbt\_%'" postgres |
            psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -q postgres >/dev/null || true
    fi
    if [ -z "${FRONTDB_TEST_MYSQL:-}" ]; then
        ensure_mariadb
        local client
        client=$(my_client)
        "$client" -h "$MY_HOST" -P "$MY_PORT" -uroot -N -e \
            "SELECT CONCAT('DROP DATABASE \`', schema_name, '\`;') FROM information_schema.schemata WHERE schema_name LIKE 'fdbt\\_%'" |
            "$client" -h "$MY_HOST" -P "$MY_PORT" -uroot >/dev/null || true
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
    # The soak's harness is a test target with `test = false`, which --all-targets leaves out.
    say "cargo clippy --test soak -- -D warnings"
    cargo clippy --test soak -- -D warnings
    say "cargo test"
    cargo test "$@"
    # The ODBC engine is not in the default build (it links unixODBC): its unit and live
    # tests build and run with the feature, as a step of their own.
    say "cargo clippy --features odbc --all-targets -- -D warnings"
    cargo clippy --features odbc --all-targets -- -D warnings
    # Every test whose name says odbc: the engine's and its dialects' unit tests, the
    # configuration's, and tests/it/odbc_live.rs.
    say "cargo test --features odbc (the ODBC engine's unit tests and tests/it/odbc_live.rs)"
    cargo test --features odbc --lib --test it odbc
    say "chaos soak: 2 minutes with seed 1, then 2 minutes with a random seed (docs/soak.md)"
    scripts/soak.sh --profile dev --minutes 2 --seed 1 --seed random
    say "all tests passed (${SECONDS}s)"
}

# Sourced (to try a step against a throwaway server), it only defines the steps.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    main "$@"
fi
