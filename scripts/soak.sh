#!/usr/bin/env bash
# The seeded chaos soak (docs/soak.md): the agent's release code (profile `soak`: release
# without whole-program optimisation) against its own PostgreSQL and MariaDB servers, three
# agents, concurrent writers and a seeded schedule of faults; then the checker.
#
#   scripts/soak.sh [--minutes N] [--seed S|random]... [--profile P] [--keep] [--broken]
#
# SOAK_MINUTES and SOAK_SEED do the same as --minutes and --seed (default: 2 minutes, a random
# seed, printed first with the command that replays it). --seed may be given more than once:
# one soak per seed, one after another, built once (`--seed 1 --seed random` is what
# scripts/test.sh runs); the exit status is the worst of them. --keep keeps the soak's directory
# (it is kept anyway when the soak fails). --broken builds a copy of the agent with
# scripts/soak/broken-watermark.patch applied (the watermark committed before the exchange
# acknowledged) and succeeds only if the checker catches it. --profile dev (SOAK_PROFILE) soaks the
# debug build that `cargo test` already made instead of building the profile `soak`: what
# scripts/test.sh does, to stay within CI's time; release checks use the default.
# Exit: 0 pass (with --broken: the checker caught the broken build), 1 fail, 2 could not run.
# Needs root: the servers run as the postgres user, and the state directories live on a
# small tmpfs that the out-of-space fault fills. CARGO_TARGET_DIR is honoured (the broken build
# goes to its soak-broken/).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '==> soak: %s\n' "$*"; }
die() { printf 'scripts/soak.sh: %s\n' "$*" >&2; exit 2; }

minutes=${SOAK_MINUTES:-2}
profile=${SOAK_PROFILE:-soak}
seeds=()
[ -z "${SOAK_SEED:-}" ] || seeds=("$SOAK_SEED")
broken=0
keep=0
while [ $# -gt 0 ]; do
    case "$1" in
        --minutes) minutes=${2:?--minutes needs a number}; shift 2 ;;
        --seed) seeds+=("${2:?--seed needs a number or random}"); shift 2 ;;
        --profile) profile=${2:?--profile needs a cargo profile}; shift 2 ;;
        --keep) keep=1; shift ;;
        --broken) broken=1; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done
[ ${#seeds[@]} -gt 0 ] || seeds=(random)
for i in "${!seeds[@]}"; do
    [ "${seeds[$i]}" != random ] || seeds[$i]=$(od -An -N8 -tu8 /dev/urandom | tr -d ' ')
    case "${seeds[$i]}" in *[!0-9]*|'') die "--seed ${seeds[$i]}: a seed is a number below 2^64 (or random)" ;; esac
done
export SOAK_MINUTES=$minutes SOAK_KEEP=$keep

[ "$(id -u)" = 0 ] || die "run as root: the soak's PostgreSQL runs as the postgres user (runuser) and its state directories are on a tmpfs it mounts"
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || die "initdb not found under /usr/lib/postgresql/*/bin: install postgresql"
command -v mariadb-install-db >/dev/null && [ -x /usr/sbin/mariadbd ] || die "mariadb-install-db or /usr/sbin/mariadbd not found: install mariadb-server"
command -v mariadb-admin >/dev/null || die "mariadb-admin not found: install mariadb-client"
faketime_lib=/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1
if [ ! -e "$faketime_lib" ]; then
    say "installing libfaketime (Debian package faketime)"
    apt-get install -y faketime >/dev/null 2>&1 || { apt-get update >/dev/null 2>&1 && apt-get install -y faketime >/dev/null; } \
        || die "cannot install the Debian package faketime (libfaketime)"
    [ -e "$faketime_lib" ] || die "$faketime_lib missing after installing faketime"
fi

work=$(mktemp -d /tmp/frontdb-soak.XXXXXX)
chmod 755 "$work"
export SOAK_DIR=$work
# Whatever happens to the harness, nothing of the soak's is left running or mounted.
cleanup() {
    local d
    for d in "$work"/run*/state; do mountpoint -q "$d" 2>/dev/null && umount "$d" || true; done
    for d in "$work"/run*/pg/data; do
        [ -f "$d/postmaster.pid" ] && runuser -u postgres -- "$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)/pg_ctl" -D "$d" -m immediate stop >/dev/null 2>&1 || true
    done
    for d in "$work"/run*/my/mysqld.pid "$work"/run*/sim/sim.pid; do [ -f "$d" ] && kill -9 "$(cat "$d")" 2>/dev/null || true; done
    rmdir "$work" 2>/dev/null || true
}
trap cleanup EXIT

build_start=$(date +%s)
say "building the agent and the harness (cargo profile $profile)"
cargo test --profile "$profile" --test soak --no-run
args=()
if [ "$broken" = 1 ]; then
    src="$work/broken-src"
    mkdir -p "$src"
    tar --exclude=./target --exclude=./.git -cf - . | tar -C "$src" -xf -
    (cd "$src" && patch -p1 --quiet < scripts/soak/broken-watermark.patch) \
        || die "scripts/soak/broken-watermark.patch no longer applies to src/job/batch/finish.rs: make it again (see docs/soak.md)"
    target_dir=${CARGO_TARGET_DIR:-$PWD/target}
    broken_target="$target_dir/soak-broken"
    if [ ! -d "$broken_target/soak" ] && [ -d "$target_dir/soak" ]; then
        # Start from the good build's dependencies: only the agent is compiled again.
        mkdir -p "$broken_target" && cp -a "$target_dir/soak" "$broken_target/soak"
    fi
    say "building the deliberately broken agent ($src)"
    CARGO_TARGET_DIR="$broken_target" cargo build --profile soak --bin frontdb-agent --manifest-path "$src/Cargo.toml"
    args+=(--agent "$broken_target/soak/frontdb-agent" --expect-loss)
fi
build_end=$(date +%s)
say "build took $((build_end - build_start))s"
worst=0
for seed in "${seeds[@]}"; do
    say "seed $seed, $minutes minute(s); replay: scripts/soak.sh --minutes $minutes --seed $seed$([ "$broken" = 1 ] && echo ' --broken')"
    run_start=$(date +%s)
    set +e
    SOAK_SEED=$seed cargo test --profile "$profile" --test soak -- "${args[@]}"
    rc=$?
    set -e
    say "seed $seed: soak took $(( $(date +%s) - run_start ))s, exit $rc"
    [ "$rc" -le "$worst" ] || worst=$rc
done
say "all soaks took $(( $(date +%s) - build_end ))s (build $((build_end - build_start))s)"
exit $worst
