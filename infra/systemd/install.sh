#!/usr/bin/env bash
# Installs token-keeper.service, its Before= drop-in for the bots and (only if absent) the env file.
# Idempotent; never overwrites an existing env file. Run as root on the VM:
#   sudo BOT_UNITS="iron_fly.service meic.service" /opt/token-keeper/infra/systemd/install.sh
# Variables: BOT_UNITS (units to start after the agent), APP_DIR (/opt/token-keeper),
# NODE_BIN (node on PATH), RUN_USER (calypso), DESTDIR (stage into a directory; no systemctl).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DESTDIR="${DESTDIR:-}"
APP_DIR="${APP_DIR:-/opt/token-keeper}"
RUN_USER="${RUN_USER:-calypso}"
NODE_BIN="${NODE_BIN:-$(command -v node || true)}"
BOT_UNITS="${BOT_UNITS:-$(sed -n 's/^Before=//p' "$here/token-keeper.service.d/10-bots.conf")}"

[[ "$NODE_BIN" == /* ]] || { echo "install.sh: node not found; set NODE_BIN=/path/to/node" >&2; exit 1; }
for u in $BOT_UNITS; do
  [[ "$u" =~ ^[A-Za-z0-9_.@:-]+\.(service|target)$ ]] || { echo "install.sh: not a unit name: $u" >&2; exit 1; }
done

unit_dir="$DESTDIR/etc/systemd/system"
env_dir="$DESTDIR/etc/token-keeper"
install -d -m 0755 "$unit_dir/token-keeper.service.d"
install -d -m 0750 "$env_dir"

sed -e "s#/opt/token-keeper#$APP_DIR#g" \
    -e "s#^ExecStart=/usr/bin/node #ExecStart=$NODE_BIN #" \
    -e "s#^User=calypso#User=$RUN_USER#" -e "s#^Group=calypso#Group=$RUN_USER#" \
    "$here/token-keeper.service" >"$unit_dir/token-keeper.service"
chmod 0644 "$unit_dir/token-keeper.service"

{
  sed -n '/^#/p' "$here/token-keeper.service.d/10-bots.conf"
  echo "[Unit]"
  echo "Before=$(echo $BOT_UNITS)"
} >"$unit_dir/token-keeper.service.d/10-bots.conf"
chmod 0644 "$unit_dir/token-keeper.service.d/10-bots.conf"

if [[ ! -e "$env_dir/token-keeper.env" ]]; then
  install -m 0640 "$here/token-keeper.env.example" "$env_dir/token-keeper.env"
  echo "install.sh: created $env_dir/token-keeper.env - edit it before starting the service"
fi

if [[ -z "$DESTDIR" ]]; then
  chgrp "$RUN_USER" "$env_dir" "$env_dir/token-keeper.env"
  systemctl daemon-reload
  echo "install.sh: installed; next: sudo systemctl enable --now token-keeper"
fi
