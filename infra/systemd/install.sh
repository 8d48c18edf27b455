#!/usr/bin/env bash
# Installs token-keeper.service (+ its Before= drop-in for the bots), the template unit
# token-keeper@.service for further chains, the env files (only if absent; modes fixed if present)
# and, on request, the Ops Agent configuration. Run as root on the VM:
#   sudo BOT_UNITS="iron_fly.service meic.service" /opt/token-keeper/infra/systemd/install.sh
#   sudo CHAINS="sim live" /opt/token-keeper/infra/systemd/install.sh      # env files for token-keeper@sim/@live
# Variables: BOT_UNITS (units to start after the main agent; default: the installed list, else the
# repository's), CHAINS (template instances to prepare),
# APP_DIR (/opt/token-keeper), NODE_BIN (node on PATH; Node 24 LTS), RUN_USER (calypso; the bots' user),
# RUN_GROUP (RUN_USER's primary group), OPS_AGENT (yes | no | ask; default ask on a terminal, else no),
# DESTDIR (stage into a directory: no systemctl).
# Every input is validated before anything is written; units are checked with systemd-analyze verify
# (when present) in a scratch dir and only then moved into place, each file by an atomic rename.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DESTDIR="${DESTDIR:-}"
APP_DIR="${APP_DIR:-/opt/token-keeper}"
RUN_USER="${RUN_USER:-calypso}"
NODE_BIN="${NODE_BIN:-$(command -v node || true)}"
# Default: the list already installed (an upgrade keeps it), else the repository's.
installed_dropin="$DESTDIR/etc/systemd/system/token-keeper.service.d/10-bots.conf"
[[ -n "${BOT_UNITS:-}" || ! -f "$installed_dropin" ]] || BOT_UNITS="$(sed -n 's/^Before=//p' "$installed_dropin")"
BOT_UNITS="${BOT_UNITS:-$(sed -n 's/^Before=//p' "$here/token-keeper.service.d/10-bots.conf")}"
CHAINS="${CHAINS:-}"
if [[ -t 0 ]]; then OPS_AGENT="${OPS_AGENT:-ask}"; else OPS_AGENT="${OPS_AGENT:-no}"; fi

die() { echo "install.sh: $*" >&2; exit 1; }
say() { echo "install.sh: $*"; }

# --- validate everything first --------------------------------------------------------------------
[[ -z "$DESTDIR" || "$DESTDIR" == /* ]] || die "DESTDIR must be an absolute path: $DESTDIR"
# Paths end up inside unit files (and sed replacements): plain absolute paths only.
[[ "$APP_DIR" =~ ^/[A-Za-z0-9._/+-]+$ && "$APP_DIR" != *..* ]] || die "APP_DIR is not a plain absolute path: $APP_DIR"
[[ -f "$APP_DIR/bin/token-keeper.js" ]] || die "APP_DIR has no bin/token-keeper.js (clone the repository there first): $APP_DIR"
[[ -d "$APP_DIR/dist/agent" ]] || say "warning: $APP_DIR/dist is missing; run npm ci in $APP_DIR as $RUN_USER before starting"
[[ -n "$NODE_BIN" ]] || die "node not found: install Node 24 LTS (docs/OPERATIONS.md, VM side, step 1) or set NODE_BIN=/path/to/node"
[[ "$NODE_BIN" =~ ^/[A-Za-z0-9._/+-]+$ ]] || die "NODE_BIN is not a plain absolute path: $NODE_BIN"
[[ -x "$NODE_BIN" ]] || die "NODE_BIN is not executable: $NODE_BIN"
node_version="$("$NODE_BIN" -p 'process.versions.node' 2>/dev/null)" || die "NODE_BIN does not run: $NODE_BIN"
# The units set ProtectHome=yes: the agent cannot see /home, /root or /run/user (a node from nvm,
# a clone in a home dir) and would fail with 203/EXEC. Refused for a real install; a staged one
# (DESTDIR, tests and packaging) only warns, since its paths are not the VM's.
for p in "$APP_DIR" "$(readlink -f "$NODE_BIN")"; do
  case "$p/" in
    /home/* | /root/* | /run/user/*)
      if [[ -z "$DESTDIR" ]]; then die "$p is under /home, /root or /run/user, hidden from the unit (ProtectHome=yes): install node and the app elsewhere (e.g. /usr/local/bin/node, /opt/token-keeper)"; fi
      say "warning: $p is under /home, /root or /run/user, hidden from the unit (ProtectHome=yes) on a real install" ;;
  esac
done
IFS=. read -r node_major node_minor _ <<<"$node_version"
# The VM runs the supported LTS (Node 24; Node 20 reached end of life in April 2026). 20.19 is the
# floor the code runs on: a staged install (DESTDIR: tests, packaging) on such a node only warns.
(( node_major > 20 || (node_major == 20 && node_minor >= 19) )) || die "node $node_version at $NODE_BIN is older than 20.19: install Node 24 LTS (docs/OPERATIONS.md, VM side, step 1)"
if (( node_major < 24 )); then
  [[ -n "$DESTDIR" ]] || die "node $node_version at $NODE_BIN is older than 24, the supported LTS: install Node 24 (docs/OPERATIONS.md, VM side, step 1) or set NODE_BIN"
  say "warning: node $node_version at $NODE_BIN is older than 24, the supported LTS (refused on a real install)"
fi
[[ "$RUN_USER" =~ ^[a-z_][a-z0-9_-]{0,31}$ ]] || die "RUN_USER is not a user name: $RUN_USER"
getent passwd "$RUN_USER" >/dev/null || die "user $RUN_USER does not exist (the bots' user; create it or set RUN_USER)"
[[ "$(id -u "$RUN_USER")" != 0 ]] || die "RUN_USER must not be root"
RUN_GROUP="${RUN_GROUP:-$(id -gn "$RUN_USER")}"
[[ "$RUN_GROUP" =~ ^[a-z_][a-z0-9_-]{0,31}$ ]] || die "RUN_GROUP is not a group name: $RUN_GROUP"
getent group "$RUN_GROUP" >/dev/null || die "group $RUN_GROUP does not exist"
for u in $BOT_UNITS; do
  [[ "$u" =~ ^[A-Za-z0-9_.@:-]+\.(service|target)$ ]] || die "not a unit name in BOT_UNITS: $u"
done
for c in $CHAINS; do
  # Becomes token-keeper@<c>.service, /etc/token-keeper/<c>.env and /var/lib/token-keeper/<c>.
  [[ "$c" =~ ^[a-z][a-z0-9-]{0,30}$ ]] || die "not a chain name in CHAINS (lowercase letters, digits, dashes): $c"
  [[ "$c" != token-keeper ]] || die "chain name token-keeper would share the main unit's env file"
done
[[ "$OPS_AGENT" =~ ^(yes|no|ask)$ ]] || die "OPS_AGENT must be yes, no or ask: $OPS_AGENT"
as_root=false; [[ "$(id -u)" == 0 ]] && as_root=true
[[ -n "$DESTDIR" ]] || $as_root || die "run as root (or stage with DESTDIR=...)"

unit_dir="$DESTDIR/etc/systemd/system"
env_dir="$DESTDIR/etc/token-keeper"
ops_file="$DESTDIR/etc/google-cloud-ops-agent/config.yaml"

# --- render the units in a scratch dir and check them before touching /etc -------------------------
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
render() {
  sed -e "s#/opt/token-keeper#$APP_DIR#g" \
      -e "s#\(ExecStart=\| \)/usr/bin/node #\1$NODE_BIN #" \
      -e "s#^User=calypso\$#User=$RUN_USER#" -e "s#^Group=calypso\$#Group=$RUN_GROUP#" \
      "$1" >"$2"
}
render "$here/token-keeper.service" "$scratch/token-keeper.service"
render "$here/token-keeper@.service" "$scratch/token-keeper@.service"
mkdir "$scratch/token-keeper.service.d"
{
  sed -n '/^#/p' "$here/token-keeper.service.d/10-bots.conf"
  echo "[Unit]"
  echo "Before=$(echo $BOT_UNITS)"
} >"$scratch/token-keeper.service.d/10-bots.conf"
if command -v systemd-analyze >/dev/null; then
  # An instance name makes the template checkable.
  cp "$scratch/token-keeper@.service" "$scratch/token-keeper@check.service"
  for u in token-keeper.service token-keeper@check.service; do
    out="$(cd "$scratch" && systemd-analyze verify "./$u" 2>&1 || true)"
    [[ -z "$out" ]] || die "systemd-analyze verify $u: $out"
  done
  rm "$scratch/token-keeper@check.service"
fi

# --- install: each file complete or not at all --------------------------------------------------------
put() { # put SRC DEST MODE: copy next to DEST, then rename over it
  local tmp
  tmp="$(dirname "$2")/.$(basename "$2").tmp.$$"
  install -m "$3" "$1" "$tmp"
  mv -f "$tmp" "$2"
}
install -d -m 0755 "$unit_dir" "$unit_dir/token-keeper.service.d"
install -d -m 0750 "$env_dir"
put "$scratch/token-keeper.service.d/10-bots.conf" "$unit_dir/token-keeper.service.d/10-bots.conf" 0644
put "$scratch/token-keeper@.service" "$unit_dir/token-keeper@.service" 0644
put "$scratch/token-keeper.service" "$unit_dir/token-keeper.service" 0644

# Env files hold the GCP settings and maybe SAXO_APP_SECRET: root-owned, readable by the service's
# group only. Never overwritten; an existing one gets its mode and owner put right.
env_file() { # env_file PATH EXAMPLE
  if [[ ! -e "$1" ]]; then
    put "$2" "$1" 0640
    say "created $1 - edit it before starting the service"
  fi
  chmod 0640 "$1"
  if $as_root; then chown "root:$RUN_GROUP" "$1"; fi
}
if $as_root; then chown "root:$RUN_GROUP" "$env_dir"; fi
chmod 0750 "$env_dir"
env_file "$env_dir/token-keeper.env" "$here/token-keeper.env.example"
for c in $CHAINS; do
  # The template unit sets this chain's data dir itself: leave the line out of the example.
  sed -e "s|^TOKEN_KEEPER_DATA_DIR=.*|# TOKEN_KEEPER_DATA_DIR: set by token-keeper@.service to /var/lib/token-keeper/$c|" \
    "$here/token-keeper.env.example" >"$scratch/$c.env"
  env_file "$env_dir/$c.env" "$scratch/$c.env"
done

# The main unit's data dir is the bots' (/opt/calypso/data unless the env file says otherwise): it is
# never created here - its existence is how the bots choose where their cache is.
data_dir="$(sed -n 's/^TOKEN_KEEPER_DATA_DIR=//p' "$env_dir/token-keeper.env" | tail -1)"
data_dir="${data_dir:-/opt/calypso/data}"
[[ -d "$data_dir" ]] || say "warning: $data_dir does not exist; the agent refuses to start until it exists (the bots' data dir; never created here)"

# The units are complete on disk: load them before the optional step below, which may fail.
if [[ -z "$DESTDIR" ]]; then systemctl daemon-reload; fi

# --- the Ops Agent's configuration (ships the agent's logs with their severity) ---------------------
ops_src="$(cd "$here/../ops-agent" && pwd)/config.yaml"
install_ops=false
case "$OPS_AGENT" in
  yes) install_ops=true ;;
  ask)
    read -r -p "Install the Ops Agent configuration for token-keeper's logs ($ops_file)? [y/N] " answer || answer=""
    [[ "$answer" =~ ^[Yy] ]] && install_ops=true ;;
esac
if $install_ops; then
  if [[ -f "$ops_file" ]] && cmp -s "$ops_src" "$ops_file"; then
    say "$ops_file is already token-keeper's"
  elif [[ -f "$ops_file" ]] && grep -qvE '^[[:space:]]*(#|$)' "$ops_file"; then
    say "$ops_file already has a configuration: not replaced. Merge $ops_src into it (docs/OPERATIONS.md)"
  else
    install -d -m 0755 "$(dirname "$ops_file")"
    backup=""
    if [[ -f "$ops_file" ]]; then backup="$ops_file.bak.$(date +%Y%m%d%H%M%S)"; cp -p "$ops_file" "$backup"; fi
    put "$ops_src" "$ops_file" 0644
    say "installed $ops_file"
    if [[ -z "$DESTDIR" ]] && systemctl list-unit-files google-cloud-ops-agent.service >/dev/null 2>&1; then
      # A config the Ops Agent rejects must not leave the VM without its logging: put the old one back.
      if ! systemctl restart google-cloud-ops-agent; then
        if [[ -n "$backup" ]]; then cp -p "$backup" "$ops_file"; else rm -f "$ops_file"; fi
        systemctl restart google-cloud-ops-agent || true
        say "warning: the Ops Agent did not restart with $ops_file; the previous configuration is back (journalctl -u google-cloud-ops-agent)"
      fi
    elif [[ -z "$DESTDIR" ]]; then
      say "the Ops Agent is not installed: see docs/OPERATIONS.md (Ops Agent) to install it"
    fi
  fi
elif [[ "$OPS_AGENT" == no ]]; then
  say "Ops Agent configuration not installed (OPS_AGENT=yes installs $ops_src)"
fi

if [[ -z "$DESTDIR" ]]; then say "installed; next: sudo systemctl enable --now token-keeper (or token-keeper@<chain> for each of: ${CHAINS:-none})"; fi
