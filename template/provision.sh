#!/bin/bash
# pve-runners template: turns a fresh Ubuntu 24.04 unprivileged LXC container into the runner template.
# Run as root INSIDE the container while the template is built (stacks/template-stack.ts does it):
#
#   pct push <vmid> template/provision.sh /root/provision.sh   (and its siblings, see below)
#   pct exec <vmid> -- bash /root/provision.sh
#
# Its siblings, pushed next to it: docker-storage-driver.sh, runner-once.sh, pve-runner.service.
#
# What it does: base packages; Docker with a storage driver that works here and bounded logs; the
# `runner` user; the GitHub Actions runner at a pinned version, checksum verified before extraction;
# the one-job unit; UTC; then it removes everything that would make two clones alike (machine-id, SSH
# host keys, apt lists, logs, docker state). Nothing secret is ever baked in: the single-use JIT
# config reaches each clone at run time.
#
# Docker comes from Ubuntu's archive (docker.io, docker-buildx, docker-compose-v2), not Docker's repo:
# one trust root (the archive keys already in the image), no third-party apt source or key to pin,
# security fixes through the same `apt` as the rest of the system, and the versions match what the
# template was tested with. Docker's repo has newer releases; switching means adding its apt source
# and key here and installing docker-ce instead.
#
# Time: a container has no clock of its own; it reads the host's kernel clock (systemd-timesyncd is
# skipped in containers: ConditionVirtualization=!container). The PVE host must keep time with
# chrony (the PVE default). The container runs in UTC.
set -euo pipefail
umask 022
# `pct exec --keep-env 0` starts us with an almost empty environment.
export LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive HOME=/root
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# GitHub Actions runner, pinned. The SHA-256 sums are those GitHub publishes in the release notes of
# https://github.com/actions/runner/releases/tag/v2.336.0 (cross-checked against several independent
# pins of the same release). To upgrade: set the version and BOTH sums from the new release notes.
# GitHub refuses runners that are too old (about 30 days after a newer release), so rebuild the
# template regularly; an outdated JIT runner updates itself first, which costs time in every job.
RUNNER_VERSION="${RUNNER_VERSION:-2.336.0}"
RUNNER_SHA256_X64="${RUNNER_SHA256_X64:-04cf0be1aff4c3ec3554466c39124ca250e3effd8873bb7e8d68535aa9505d5d}"
RUNNER_SHA256_ARM64="${RUNNER_SHA256_ARM64:-58b758e420b87093fbd4bfddd368074960053e2f1388f01848c82624b90f27d1}"
RUNNER_DIR=/opt/actions-runner
RUNNER_USER=runner
# GitHub-hosted parity: workflows run `sudo apt-get install ...`. The docker group is root-equivalent
# anyway, and the container is unprivileged and destroyed after its one job. Set 0 to leave it out.
RUNNER_SUDO="${RUNNER_SUDO:-1}"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
step() { echo "==> provision: $*"; }
die() {
  echo "provision: $*" >&2
  exit 1
}

[[ "$(id -u)" == 0 ]] || die "run as root inside the container"
for f in docker-storage-driver.sh runner-once.sh pve-runner.service; do
  [[ -r "$here/$f" ]] || die "$here/$f is missing: push it next to provision.sh"
done
if command -v systemd-detect-virt >/dev/null && [[ "$(systemd-detect-virt -c || true)" != lxc ]]; then
  echo "provision: warning: this does not look like an LXC container" >&2
fi

retry() {
  local n
  for n in 1 2 3 4 5; do
    "$@" && return 0
    echo "provision: '$*' failed (attempt $n), retrying" >&2
    sleep $((n * 3))
  done
  "$@"
}

step "time: UTC; the clock is the host's (keep chrony running on the PVE host)"
ln -sf /usr/share/zoneinfo/UTC /etc/localtime
echo UTC >/etc/timezone
# Nothing to synchronise from inside a container.
systemctl mask systemd-timesyncd.service >/dev/null 2>&1 || true

step "no unattended upgrades or apt timers in runner containers (they would race jobs for the dpkg lock)"
systemctl disable --now apt-daily.timer apt-daily-upgrade.timer unattended-upgrades.service >/dev/null 2>&1 || true
systemctl mask apt-daily.service apt-daily-upgrade.service >/dev/null 2>&1 || true

step "base packages"
# docker.io, docker-buildx and docker-compose-v2 are in universe: make sure it is enabled, in either
# sources format (sources.list lines or deb822 .sources files).
if [[ -f /etc/apt/sources.list ]]; then
  sed -i -E '/^deb(-src)? .* main/{/ universe/!s/$/ universe/}' /etc/apt/sources.list
fi
for f in /etc/apt/sources.list.d/*.sources; do
  if [[ -f "$f" ]] && grep -q '^Suites:.*noble' "$f"; then
    sed -i -E '/^Components:/{/ universe/!s/$/ universe/}' "$f"
  fi
done
retry apt-get update -q
retry apt-get install -y -q --no-install-recommends ca-certificates curl git jq tar gzip sudo
retry apt-get -y -q dist-upgrade

step "docker: storage driver and bounded logs"
driver="$(bash "$here/docker-storage-driver.sh")"
install -d -m 0755 /etc/docker
jq -n --arg driver "$driver" '{
  "storage-driver": $driver,
  "log-driver": "local",
  "log-opts": { "max-size": "10m", "max-file": "3" }
}' >/etc/docker/daemon.json
retry apt-get install -y -q --no-install-recommends docker.io docker-buildx docker-compose-v2 containerd runc iptables
systemctl enable docker.service containerd.service >/dev/null
if [[ "${PVE_RUNNERS_SKIP_DOCKER_CHECK:-0}" != 1 ]]; then
  systemctl restart docker.service
  actual="$(docker info --format '{{.Driver}}' 2>/dev/null)" || die "docker does not start in this container: see 'journalctl -u docker'. Needs CT features nesting=1,keyctl=1 and, on hosts with runc 1.3.3+, lxc-pve >= 6.0.5-2 (set PVE_RUNNERS_SKIP_DOCKER_CHECK=1 to build anyway)"
  [[ "$actual" == "$driver" ]] || die "docker uses $actual, expected $driver"
  echo "docker works with $actual"
fi

step "the $RUNNER_USER user (docker group${RUNNER_SUDO:+, sudo=$RUNNER_SUDO})"
if ! id "$RUNNER_USER" >/dev/null 2>&1; then
  useradd --create-home --shell /bin/bash --user-group "$RUNNER_USER"
fi
usermod -aG docker "$RUNNER_USER"
passwd -l "$RUNNER_USER" >/dev/null
if [[ "$RUNNER_SUDO" == 1 ]]; then
  echo "$RUNNER_USER ALL=(ALL) NOPASSWD:ALL" >/etc/sudoers.d/90-pve-runners-runner
  chmod 0440 /etc/sudoers.d/90-pve-runners-runner
  visudo -cf /etc/sudoers.d/90-pve-runners-runner >/dev/null
else
  rm -f /etc/sudoers.d/90-pve-runners-runner
fi

step "GitHub Actions runner $RUNNER_VERSION"
case "$(dpkg --print-architecture)" in
  amd64) rarch=x64 sha="$RUNNER_SHA256_X64" ;;
  arm64) rarch=arm64 sha="$RUNNER_SHA256_ARM64" ;;
  *) die "no GitHub Actions runner for $(dpkg --print-architecture)" ;;
esac
[[ "$sha" =~ ^[0-9a-f]{64}$ ]] || die "RUNNER_SHA256 for $rarch is not a SHA-256"
tarball="actions-runner-linux-$rarch-$RUNNER_VERSION.tar.gz"
tmp="$(mktemp -d)"
retry curl -fsSL --proto '=https' -o "$tmp/$tarball" \
  "https://github.com/actions/runner/releases/download/v$RUNNER_VERSION/$tarball"
# Verified before anything is extracted.
echo "$sha  $tmp/$tarball" | sha256sum --check --strict - || die "checksum mismatch for $tarball: not extracting"
rm -rf "$RUNNER_DIR"
install -d -m 0755 "$RUNNER_DIR"
tar -xzf "$tmp/$tarball" -C "$RUNNER_DIR" --no-same-owner
rm -rf "$tmp"
retry "$RUNNER_DIR/bin/installdependencies.sh"
chown -R "$RUNNER_USER:$RUNNER_USER" "$RUNNER_DIR"
[[ -x "$RUNNER_DIR/run.sh" ]] || die "$RUNNER_DIR/run.sh is missing"

step "the one-job unit"
install -D -m 0755 "$here/runner-once.sh" /usr/local/lib/pve-runners/runner-once
install -m 0644 "$here/pve-runner.service" /etc/systemd/system/pve-runner.service
systemctl daemon-reload
systemctl enable pve-runner.service >/dev/null
rm -rf /var/lib/pve-runners /run/pve-runners

step "no SSH in runner containers (the host reaches them with pct exec)"
apt-get purge -y -q openssh-server >/dev/null 2>&1 || true

step "clean up: every clone must be unique and nothing of the build may remain"
systemctl stop docker.service docker.socket containerd.service >/dev/null 2>&1 || true
# Fresh docker state in every clone (engine id, networks, build cache).
find /var/lib/docker -mindepth 1 -maxdepth 1 -exec rm -rf {} + 2>/dev/null || true
rm -f /etc/docker/key.json
apt-get -y -q autoremove --purge
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
rm -f /etc/ssh/ssh_host_*
# Empty, not absent: PVE truncates it on clone too, and systemd generates a new id at each first boot.
truncate -s 0 /etc/machine-id
rm -f /var/lib/dbus/machine-id
if [[ -d /var/lib/dbus ]]; then ln -s /etc/machine-id /var/lib/dbus/machine-id; fi
rm -f /var/lib/systemd/random-seed /var/lib/systemd/credential.secret
journalctl --rotate >/dev/null 2>&1 || true
find /var/log -type f \( -name '*.gz' -o -name '*.[0-9]' -o -name '*.old' \) -delete
find /var/log -type f -exec truncate -s 0 {} +
rm -rf /var/log/journal/* /tmp/* /var/tmp/* /root/.bash_history /root/.cache
rm -f "$here/docker-storage-driver.sh" "$here/runner-once.sh" "$here/pve-runner.service" "$here/provision.sh"
sync
step "done: shut the container down and convert it with 'pct template <vmid>'"
