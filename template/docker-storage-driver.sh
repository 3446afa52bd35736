#!/bin/bash
# pve-runners template: which Docker storage driver works in this unprivileged LXC container?
#
#   docker-storage-driver.sh [--no-install]      prints the driver name on stdout, reasons on stderr
#
# overlay2 needs an upper filesystem that supports RENAME_WHITEOUT and user xattrs in a user namespace:
#   ext4, xfs                -> overlay2 (LVM-thin, directory storage)
#   zfs >= 2.2               -> overlay2 (OpenZFS 2.2 added RENAME_WHITEOUT; PVE 8.1+ ships it)
#   zfs < 2.2, btrfs, other  -> fuse-overlayfs (installed here), which needs /dev/fuse in the container
#                               (the CT feature fuse=1, settable by root@pam only). Without /dev/fuse
#                               it prints vfs: slow and disk-hungry, but it works everywhere.
# Sources: OpenZFS 2.2.0 release notes (overlayfs support); PVE admin guide, "Linux Container" (fuse).
#
# Test overrides: PVE_RUNNERS_FSTYPE (filesystem type), PVE_RUNNERS_ZFS_VERSION (e.g. 2.2.6-pve1),
# PVE_RUNNERS_DOCKER_ROOT (/var/lib/docker), PVE_RUNNERS_ZFS_VERSION_FILE (/sys/module/zfs/version),
# PVE_RUNNERS_FUSE_DEVICE (/dev/fuse), PVE_RUNNERS_NO_INSTALL=1 (same as --no-install).
set -euo pipefail
export LC_ALL=C

note() { echo "docker-storage-driver: $*" >&2; }

no_install="${PVE_RUNNERS_NO_INSTALL:-0}"
[[ "${1:-}" == "--no-install" ]] && no_install=1

docker_root="${PVE_RUNNERS_DOCKER_ROOT:-/var/lib/docker}"
zfs_version_file="${PVE_RUNNERS_ZFS_VERSION_FILE:-/sys/module/zfs/version}"
fuse_device="${PVE_RUNNERS_FUSE_DEVICE:-/dev/fuse}"

# The filesystem /var/lib/docker will live on: its nearest existing ancestor's.
fs_type() {
  if [[ -n "${PVE_RUNNERS_FSTYPE:-}" ]]; then
    echo "$PVE_RUNNERS_FSTYPE"
    return
  fi
  local d="$docker_root"
  while [[ ! -e "$d" && "$d" != "/" ]]; do d="$(dirname "$d")"; done
  findmnt -n -o FSTYPE -T "$d" 2>/dev/null || stat -f -c %T "$d"
}

zfs_version() {
  if [[ -n "${PVE_RUNNERS_ZFS_VERSION:-}" ]]; then
    echo "$PVE_RUNNERS_ZFS_VERSION"
  elif [[ -r "$zfs_version_file" ]]; then
    head -n 1 "$zfs_version_file"
  fi
}

# 0 when "major.minor[.patch][-suffix]" is at least 2.2.
zfs_at_least_2_2() {
  local v="$1" major minor
  [[ "$v" =~ ^([0-9]+)\.([0-9]+) ]] || return 1
  major="${BASH_REMATCH[1]}"
  minor="${BASH_REMATCH[2]}"
  ((major > 2 || (major == 2 && minor >= 2)))
}

fuse_or_vfs() {
  if [[ ! -e "$fuse_device" ]]; then
    note "$1; $fuse_device is missing (set the CT feature fuse=1 as root@pam for fuse-overlayfs): using vfs"
    echo vfs
    return
  fi
  note "$1: using fuse-overlayfs"
  if [[ "$no_install" != 1 ]] && ! command -v fuse-overlayfs >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends fuse-overlayfs >&2
  fi
  echo fuse-overlayfs
}

fs="$(fs_type)"
case "$fs" in
  ext4 | ext2/ext3 | xfs)
    note "$docker_root is on $fs: using overlay2"
    echo overlay2
    ;;
  zfs)
    v="$(zfs_version)"
    if [[ -n "$v" ]] && zfs_at_least_2_2 "$v"; then
      note "$docker_root is on ZFS $v (>= 2.2): using overlay2"
      echo overlay2
    else
      fuse_or_vfs "$docker_root is on ZFS ${v:-of unknown version} (< 2.2 has no RENAME_WHITEOUT)"
    fi
    ;;
  *)
    fuse_or_vfs "$docker_root is on ${fs:-an unknown filesystem}"
    ;;
esac
