#!/usr/bin/env bash
# Install frontdb-agent on a systemd host without the Debian package: the binary, the unit,
# a template configuration with safe permissions, the service user, and the documentation
# (README and docs/, English and Chinese) under share/doc/frontdb-agent.
#   deploy/install.sh [path/to/frontdb-agent]      (default: target/release/frontdb-agent)
# DESTDIR=/some/root installs into that tree instead (no user, no systemctl): for packaging
# and tests. PREFIX (default /usr) sets where the binary, the documentation and the SQL go.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release/frontdb-agent}
ROOT=${DESTDIR:-}
PREFIX=${PREFIX:-/usr}
USER_NAME=frontdb-agent

[ -x "$BIN" ] || { echo "install.sh: $BIN not found; build it with: cargo build --release" >&2; exit 1; }

DOC=$PREFIX/share/doc/frontdb-agent
install -d "$ROOT$PREFIX/bin" "$ROOT/lib/systemd/system" "$ROOT/etc/frontdb-agent" \
    "$ROOT$DOC/examples" "$ROOT$DOC/docs/zh-CN" "$ROOT$PREFIX/share/frontdb-agent"
install -m 0755 "$BIN" "$ROOT$PREFIX/bin/frontdb-agent"
# The unit names the binary and its documentation where this PREFIX puts them.
sed -e "s#/usr/bin/frontdb-agent#$PREFIX/bin/frontdb-agent#g" \
    -e "s#/usr/share/doc/frontdb-agent#$DOC#g" deploy/frontdb-agent.service \
    > "$ROOT/lib/systemd/system/frontdb-agent.service"
chmod 0644 "$ROOT/lib/systemd/system/frontdb-agent.service"
install -m 0644 README.md README.zh-CN.md "$ROOT$DOC/"
install -m 0644 docs/*.md "$ROOT$DOC/docs/"
install -m 0644 docs/zh-CN/*.md "$ROOT$DOC/docs/zh-CN/"
install -m 0644 config/*.example.toml "$ROOT$DOC/examples/"
cp -r sql "$ROOT$PREFIX/share/frontdb-agent/"
# Never overwrite a configuration that is already there.
if [ ! -e "$ROOT/etc/frontdb-agent/agent.toml" ]; then
    install -m 0640 deploy/agent.toml "$ROOT/etc/frontdb-agent/agent.toml"
fi
chmod 0750 "$ROOT/etc/frontdb-agent"

if [ -z "$ROOT" ]; then
    if ! getent passwd "$USER_NAME" >/dev/null; then
        useradd --system --home-dir /var/lib/frontdb-agent --no-create-home \
            --shell /usr/sbin/nologin --user-group "$USER_NAME"
    fi
    chown root:"$USER_NAME" /etc/frontdb-agent /etc/frontdb-agent/agent.toml
    systemctl daemon-reload
    echo "installed. Edit /etc/frontdb-agent/agent.toml, run: frontdb-agent check"
    echo "then: systemctl enable --now frontdb-agent"
fi
