#!/bin/bash
# pve-runners: install on a Proxmox VE host. Run as root from the repository checkout, after
# `npm ci && npm run build`:
#
#   systemd/install.sh [--dry-run] [--root DIR] [--no-app]
#
#   --dry-run   print what would be done, change nothing
#   --root DIR  install under DIR (a package build or a test); users, ownership and systemctl are
#               skipped there unless their commands are given in the environment (below)
#   --no-app    leave /usr/lib/pve-runners (the built listener) alone
#
# It creates the pve-runners system user and group; /etc/pve-runners (0750 root:pve-runners) with a
# config skeleton if there is none; /etc/pve-runners/credentials (0700 root) with a random admin-token
# (0600) if there is none; the listener in /usr/lib/pve-runners and /usr/bin/pve-runners; the helpers
# in /usr/libexec/pve-runners; the units in /etc/systemd/system. Then daemon-reload and the delivery
# socket enabled. The listener itself is started by you, once config and credentials are in place
# (the next steps are printed). Running it again changes only the installed files (config and
# credentials are kept).
#
# Environment (tests): PVE_RUNNERS_SRC (the checkout), PVE_RUNNERS_ROOT (= --root), and the system
# commands PVE_RUNNERS_SYSTEMCTL, PVE_RUNNERS_GETENT, PVE_RUNNERS_GROUPADD, PVE_RUNNERS_USERADD,
# PVE_RUNNERS_CHOWN.
set -euo pipefail
umask 022
export LC_ALL=C

src="${PVE_RUNNERS_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
root="${PVE_RUNNERS_ROOT:-}"
dry=0
app=1
while (($#)); do
  case "$1" in
    --dry-run) dry=1 ;;
    --root)
      [[ $# -ge 2 ]] || { echo "install.sh: --root needs a directory" >&2; exit 2; }
      root="$2"
      shift
      ;;
    --root=*) root="${1#--root=}" ;;
    --no-app) app=0 ;;
    -h | --help)
      sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *) echo "install.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
root="${root%/}"

# System commands: live on the real root; skipped under --root unless given.
default_cmd() { if [[ -z "$root" ]]; then echo "$1"; fi; }
systemctl_cmd="${PVE_RUNNERS_SYSTEMCTL-$(default_cmd systemctl)}"
getent_cmd="${PVE_RUNNERS_GETENT-$(default_cmd getent)}"
groupadd_cmd="${PVE_RUNNERS_GROUPADD-$(default_cmd groupadd)}"
useradd_cmd="${PVE_RUNNERS_USERADD-$(default_cmd useradd)}"
chown_cmd="${PVE_RUNNERS_CHOWN-$(default_cmd chown)}"

USER_NAME=pve-runners
ETC=/etc/pve-runners
LIBEXEC=/usr/libexec/pve-runners
LIB=/usr/lib/pve-runners
SHARE=/usr/share/pve-runners
UNITS=/etc/systemd/system
CLIENT="$LIBEXEC/deliver-jit-client"

say() { echo "install.sh: $*"; }
die() {
  echo "install.sh: $*" >&2
  exit 1
}
run() {
  if ((dry)); then
    printf 'would run:'
    printf ' %q' "$@"
    printf '\n'
  else
    "$@"
  fi
}
# own OWNER:GROUP PATH — ownership only where it means something (the live root, or a given chown).
own() {
  if [[ -n "$chown_cmd" ]]; then
    run "$chown_cmd" "$1" "$root$2"
  fi
}
dir() { # dir MODE OWNER:GROUP PATH
  run install -d -m "$1" "$root$3"
  own "$2" "$3"
}
file() { # file MODE SRC DEST
  run install -m "$1" "$2" "$root$3"
}

((dry)) || [[ -n "$root" ]] || [[ "$(id -u)" == 0 ]] || die "run as root (or --dry-run, or --root DIR)"
for f in systemd/pve-runners.service systemd/pve-runners-deliver.socket systemd/pve-runners-deliver@.service \
  systemd/deliver-jit systemd/deliver-jit-socket systemd/deliver-jit-client systemd/pveum-setup.sh \
  systemd/github-app-manifest.json listener/config-example.yaml template/provision.sh; do
  [[ -r "$src/$f" ]] || die "$src/$f is missing: run this from the pve-runners checkout"
done
[[ -n "$root" ]] && say "installing under $root"
((dry)) && say "dry run: nothing is changed"

say "user and group $USER_NAME"
if [[ -z "$getent_cmd" ]]; then
  say "  skipped under --root: create them where this tree is installed"
else
  if "$getent_cmd" group "$USER_NAME" >/dev/null 2>&1; then
    say "  group $USER_NAME exists"
  else
    run "$groupadd_cmd" --system "$USER_NAME"
  fi
  if "$getent_cmd" passwd "$USER_NAME" >/dev/null 2>&1; then
    say "  user $USER_NAME exists"
  else
    run "$useradd_cmd" --system --gid "$USER_NAME" --home-dir /var/lib/pve-runners --no-create-home \
      --shell /usr/sbin/nologin --comment "pve-runners webhook listener" "$USER_NAME"
  fi
fi

say "directories"
dir 0750 "root:$USER_NAME" "$ETC"
dir 0700 root:root "$ETC/credentials"
dir 0755 root:root "$LIBEXEC"
dir 0755 root:root "$LIB"
dir 0755 root:root "$LIB/template"
dir 0755 root:root "$SHARE"
dir 0755 root:root /usr/share/doc/pve-runners
dir 0755 root:root "$UNITS"

say "config"
if [[ -e "$root$ETC/config.yaml" ]]; then
  say "  $ETC/config.yaml exists: kept"
else
  # The skeleton, with JIT delivery through the socket (the hardened unit cannot use sudo).
  if ((dry)); then
    say "would write $root$ETC/config.yaml from listener/config-example.yaml (delivery.helper: [$CLIENT])"
  else
    sed -E "s#^([[:space:]]*helper:).*#\\1 [$CLIENT]#" "$src/listener/config-example.yaml" >"$root$ETC/config.yaml.new"
    chmod 0640 "$root$ETC/config.yaml.new"
    mv "$root$ETC/config.yaml.new" "$root$ETC/config.yaml"
  fi
  own "root:$USER_NAME" "$ETC/config.yaml"
fi

say "admin token"
# The admin API (status page, /metrics, the CLI) needs it on every request, loopback too. Root-only,
# like the other credentials: the unit loads it (LoadCredential=admin-token), the CLI reads it as root.
if [[ -e "$root$ETC/credentials/admin-token" ]]; then
  say "  $ETC/credentials/admin-token exists: kept"
elif ((dry)); then
  say "would write $root$ETC/credentials/admin-token (32 random bytes, base64url, 0600)"
else
  (
    umask 077
    printf '%s\n' "$(head -c 32 /dev/urandom | base64 -w0 | tr '+/' '-_' | tr -d '=')" >"$root$ETC/credentials/admin-token.new"
  )
  mv "$root$ETC/credentials/admin-token.new" "$root$ETC/credentials/admin-token"
  own root:root "$ETC/credentials/admin-token"
fi

say "helpers in $LIBEXEC"
file 0755 "$src/systemd/deliver-jit" "$LIBEXEC/deliver-jit"
file 0755 "$src/systemd/deliver-jit-socket" "$LIBEXEC/deliver-jit-socket"
file 0755 "$src/systemd/deliver-jit-client" "$CLIENT"
file 0755 "$src/systemd/pveum-setup.sh" "$LIBEXEC/pveum-setup"

say "units in $UNITS"
for u in pve-runners.service pve-runners-deliver.socket pve-runners-deliver@.service; do
  file 0644 "$src/systemd/$u" "$UNITS/$u"
done

say "template scripts in $LIB/template, GitHub App manifest and config example in $SHARE"
for f in "$src"/template/*; do
  case "$f" in
    *.sh) file 0755 "$f" "$LIB/template/$(basename "$f")" ;;
    *) file 0644 "$f" "$LIB/template/$(basename "$f")" ;;
  esac
done
file 0644 "$src/systemd/github-app-manifest.json" "$SHARE/github-app-manifest.json"
file 0644 "$src/listener/config-example.yaml" "$SHARE/config-example.yaml"
if [[ -r "$src/README.md" ]]; then file 0644 "$src/README.md" /usr/share/doc/pve-runners/README.md; fi

if ((app)); then
  say "the listener in $LIB"
  [[ -r "$src/dist/cli/main.js" ]] || die "$src/dist is not built: run 'npm ci && npm run build' first (or --no-app)"
  [[ -d "$src/node_modules" ]] || die "$src/node_modules is missing: run 'npm ci' first (or --no-app)"
  for d in dist node_modules; do
    run rm -rf "$root$LIB/$d"
    run cp -a "$src/$d" "$root$LIB/$d"
  done
  dir 0755 root:root /usr/bin
  file 0644 "$src/package.json" "$LIB/package.json"
  if [[ -r "$src/cdktf.json" ]]; then file 0644 "$src/cdktf.json" "$LIB/cdktf.json"; fi
  if ((dry)); then
    say "would write $root/usr/bin/pve-runners (exec node $LIB/dist/cli/main.js)"
  else
    printf '#!/bin/sh\nexec node %s/dist/cli/main.js "$@"\n' "$LIB" >"$root/usr/bin/pve-runners.new"
    chmod 0755 "$root/usr/bin/pve-runners.new"
    mv "$root/usr/bin/pve-runners.new" "$root/usr/bin/pve-runners"
  fi
fi

say "systemd"
if [[ -z "$systemctl_cmd" ]]; then
  say "  skipped under --root: run 'systemctl daemon-reload && systemctl enable --now pve-runners-deliver.socket' there"
else
  run "$systemctl_cmd" daemon-reload
  run "$systemctl_cmd" enable --now pve-runners-deliver.socket
fi

if [[ -z "$root" ]]; then
  command -v node >/dev/null || say "WARNING: node is not installed: apt install nodejs (Node.js >= 20.9)"
  command -v terraform >/dev/null || command -v tofu >/dev/null ||
    say "WARNING: neither terraform nor tofu is on PATH: install one (terraform.binary in the config)"
  command -v python3 >/dev/null || say "WARNING: python3 is missing: $CLIENT needs it"
fi

cat <<EOF

pve-runners is installed. Next steps (README: "Install on a PVE host"):

  1. PVE role, pool, user and API token (least privilege; README "Install on a PVE host", step 3):
       $LIBEXEC/pveum-setup --bridge vmbr1 --vlan 30 --storage local-lvm \\
         --token-file $ETC/credentials/pve-token
  2. GitHub App: create it from $SHARE/github-app-manifest.json (set name, url,
     hook_attributes.url to https://<your proxy>/webhooks/github), then, as root, mode 0600:
       $ETC/credentials/github-app.pem    the App's private key
       $ETC/credentials/webhook-secret    the App's webhook secret (at least 16 characters)
  3. Edit $ETC/config.yaml: appId, node, templateVmid, bridge, vlan, pool, labelSets, allow.
  4. Build the runner template (as root; keyctl can only be set by root@pam with a password;
     it works in /var/lib/pve-runners-template, never in the listener's state dir):
       read -rs PROXMOX_VE_PASSWORD && export PROXMOX_VE_PASSWORD PROXMOX_VE_USERNAME=root@pam
       pve-runners template deploy --config $ETC/config.yaml
     Then check everything serve needs (one line each, with the fix for any that fails):
       pve-runners check --config $ETC/config.yaml
  5. Start: systemctl enable --now pve-runners && journalctl -u pve-runners -f
     Point the TLS reverse proxy at 127.0.0.1:8790 (listener.trustProxy: loopback believes its
     X-Forwarded-For; a proxy on another host: set its address instead, never true).
  6. Status: as root, pve-runners status; or in a browser (e.g. through ssh -L 8791:127.0.0.1:8791)
     http://localhost:8791/ with the token in $ETC/credentials/admin-token
EOF
