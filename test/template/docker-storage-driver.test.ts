// template/docker-storage-driver.sh: overlay2 where it works in an unprivileged CT, else fuse-overlayfs
// (or vfs when the container has no /dev/fuse).
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const root = resolve(import.meta.dirname, import.meta.url.endsWith(".ts") ? "../.." : "../../..");
const script = join(root, "template", "docker-storage-driver.sh");

function pick(env: NodeJS.ProcessEnv): { driver: string; why: string; code: number | null } {
  const r = spawnSync("bash", [script], {
    env: { PATH: process.env.PATH, PVE_RUNNERS_NO_INSTALL: "1", PVE_RUNNERS_FUSE_DEVICE: script, PVE_RUNNERS_ZFS_VERSION_FILE: "/nonexistent/zfs/version", ...env },
    encoding: "utf8",
  });
  return { driver: r.stdout.trim(), why: r.stderr, code: r.status };
}

describe("docker-storage-driver", () => {
  const cases: Array<[string, NodeJS.ProcessEnv, string]> = [
    ["ext4 (LVM-thin, directory storage)", { PVE_RUNNERS_FSTYPE: "ext4" }, "overlay2"],
    ["ext4 as stat -f names it", { PVE_RUNNERS_FSTYPE: "ext2/ext3" }, "overlay2"],
    ["xfs", { PVE_RUNNERS_FSTYPE: "xfs" }, "overlay2"],
    ["ZFS 2.1.15 (no RENAME_WHITEOUT)", { PVE_RUNNERS_FSTYPE: "zfs", PVE_RUNNERS_ZFS_VERSION: "2.1.15-pve1" }, "fuse-overlayfs"],
    ["ZFS 2.1.x without a suffix", { PVE_RUNNERS_FSTYPE: "zfs", PVE_RUNNERS_ZFS_VERSION: "2.1.5" }, "fuse-overlayfs"],
    ["ZFS 0.8", { PVE_RUNNERS_FSTYPE: "zfs", PVE_RUNNERS_ZFS_VERSION: "0.8.6-pve1" }, "fuse-overlayfs"],
    ["ZFS 2.2.0", { PVE_RUNNERS_FSTYPE: "zfs", PVE_RUNNERS_ZFS_VERSION: "2.2.0-pve1" }, "overlay2"],
    ["ZFS 2.2.6 (PVE 8.x)", { PVE_RUNNERS_FSTYPE: "zfs", PVE_RUNNERS_ZFS_VERSION: "2.2.6-pve1" }, "overlay2"],
    ["ZFS 2.3.4 (PVE 9.x)", { PVE_RUNNERS_FSTYPE: "zfs", PVE_RUNNERS_ZFS_VERSION: "2.3.4-pve1" }, "overlay2"],
    ["ZFS 3.0", { PVE_RUNNERS_FSTYPE: "zfs", PVE_RUNNERS_ZFS_VERSION: "3.0.0" }, "overlay2"],
    ["ZFS of unknown version", { PVE_RUNNERS_FSTYPE: "zfs" }, "fuse-overlayfs"],
    ["btrfs", { PVE_RUNNERS_FSTYPE: "btrfs" }, "fuse-overlayfs"],
    ["something else (tmpfs)", { PVE_RUNNERS_FSTYPE: "tmpfs" }, "fuse-overlayfs"],
    ["btrfs in a container without /dev/fuse", { PVE_RUNNERS_FSTYPE: "btrfs", PVE_RUNNERS_FUSE_DEVICE: "/nonexistent/fuse" }, "vfs"],
    ["old ZFS in a container without /dev/fuse", { PVE_RUNNERS_FSTYPE: "zfs", PVE_RUNNERS_ZFS_VERSION: "2.1.15", PVE_RUNNERS_FUSE_DEVICE: "/nonexistent/fuse" }, "vfs"],
  ];
  for (const [name, env, want] of cases) {
    test(`${name} -> ${want}`, () => {
      const r = pick(env);
      assert.equal(r.code, 0, r.why);
      assert.equal(r.driver, want, r.why);
      assert.match(r.why, /^docker-storage-driver: /m, "the reason goes to stderr");
    });
  }

  test("reads the ZFS version from /sys/module/zfs/version (stand-in file)", () => {
    const d = mkdtempSync(join(tmpdir(), "zfsver-"));
    try {
      writeFileSync(join(d, "version"), "2.2.7-pve2\n");
      assert.equal(pick({ PVE_RUNNERS_FSTYPE: "zfs", PVE_RUNNERS_ZFS_VERSION_FILE: join(d, "version") }).driver, "overlay2");
      writeFileSync(join(d, "version"), "2.1.14-pve1\n");
      assert.equal(pick({ PVE_RUNNERS_FSTYPE: "zfs", PVE_RUNNERS_ZFS_VERSION_FILE: join(d, "version") }).driver, "fuse-overlayfs");
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });

  test("without overrides it looks at the filesystem under the nearest existing ancestor of the docker root", () => {
    const d = mkdtempSync(join(tmpdir(), "dockerroot-"));
    try {
      const fs = spawnSync("findmnt", ["-n", "-o", "FSTYPE", "-T", d], { encoding: "utf8" }).stdout.trim();
      const r = pick({ PVE_RUNNERS_DOCKER_ROOT: join(d, "var", "lib", "docker") });
      assert.equal(r.code, 0, r.why);
      assert.ok(["overlay2", "fuse-overlayfs", "vfs"].includes(r.driver));
      if (fs) assert.match(r.why, new RegExp(`is on ${fs.replace(/[/]/g, "\\/")}`));
      if (fs === "ext4" || fs === "xfs") assert.equal(r.driver, "overlay2");
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });
});
