// The privileged helper (systemd/deliver-jit) run for real, with a recording `pct` stand-in on PATH.
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pino } from "pino";
import { PctHelperDelivery } from "../../../../listener/adapters/jit/jit-delivery.js";
import { writeRecordingPct } from "../../../fixtures/recording-pct.js";

const root = resolve(import.meta.dirname, import.meta.url.endsWith(".ts") ? "../../../.." : "../../../../..");
const helper = join(root, "systemd", "deliver-jit");
const SECRET = "eyJydW5uZXIiOiJqaXQtY29uZmlnIiwic2VjcmV0IjoidmFsdWUifQ==";

describe("JIT delivery through the privileged helper", () => {
  let dir: string;
  let env: NodeJS.ProcessEnv;
  const configs: Record<string, string> = {
    "201": "hostname: runner-aa11\ntags: pve-runners;pve-runners-runner-aa11\nunprivileged: 1\n",
    "202": "hostname: runner-bb22\ntags: other\nunprivileged: 1\n",
    "203": "hostname: runner-cc33\ntags: pve-runners\nunprivileged: 0\n",
    "204": "hostname: runner-dd44\ntags: pve-runners\ntemplate: 1\nunprivileged: 1\n",
    "205": "hostname: runner-ff66\ntags: pve-runners\nunprivileged: 1\n",
    // Someone else's running container with changes pending (not in effect until it restarts) that
    // would make it look like one of ours; and one of ours with a pending change that is not.
    "206": "hostname: db-prod\ntags: prod\nunprivileged: 1\n\n[pve:pending]\nhostname: runner-gg77\ntags: pve-runners\n",
    "207": "hostname: runner-hh88\ntags: pve-runners\nunprivileged: 1\n\n[pve:pending]\ndelete: tags\nhostname: other\n",
  };

  before(() => {
    dir = mkdtempSync(join(tmpdir(), "jit-"));
    writeRecordingPct(dir, configs);
    env = { ...process.env, PATH: `${dir}:${process.env.PATH}` };
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const delivery = () => new PctHelperDelivery({ command: [helper], env, logger: pino({ level: "silent" }) });

  test("delivers the config on stdin into our container, with the host environment kept out", async () => {
    await delivery().deliver({ node: "pve", vmid: 201, runner: "runner-aa11", jitConfig: SECRET });
    assert.equal(readFileSync(join(dir, "exec-201.stdin"), "utf8"), SECRET + "\n");
    const argv = readFileSync(join(dir, "exec-201.argv"), "utf8").split("\n");
    assert.deepEqual(argv.slice(0, 5), ["exec", "201", "--keep-env", "0", "--"]);
    assert.ok(!argv.join(" ").includes(SECRET), "the config is never an argument");
    assert.match(argv.join(" "), /cat > \/run\/pve-runners\/jitconfig\.tmp && mv/);
  });

  test("refuses containers that are not ours, and says why without echoing the config", async () => {
    const cases: Array<[number, string, RegExp]> = [
      [201, "runner-zz99", /is not runner-zz99/],
      [202, "runner-bb22", /not tagged pve-runners/],
      [203, "runner-cc33", /privileged/],
      [204, "runner-dd44", /template/],
      [299, "runner-ee55", /does not exist/],
      [201, "../etc", /bad runner name/],
      [12, "runner-aa11", /bad vmid/],
    ];
    for (const [vmid, runner, why] of cases) {
      await assert.rejects(delivery().deliver({ node: "pve", vmid, runner, jitConfig: SECRET }), (err: Error) => {
        assert.match(err.message, why);
        assert.ok(!err.message.includes(SECRET));
        return true;
      });
      if (vmid !== 201) assert.equal(existsSync(join(dir, `exec-${vmid}.stdin`)), false);
    }
  });

  test("judges the container by its current config (`pct config --current`), not by changes still pending", async () => {
    await assert.rejects(delivery().deliver({ node: "pve", vmid: 206, runner: "runner-gg77", jitConfig: SECRET }), /CT 206 is not runner-gg77: refusing/);
    assert.equal(existsSync(join(dir, "exec-206.stdin")), false, "nothing reached the container");
    await delivery().deliver({ node: "pve", vmid: 207, runner: "runner-hh88", jitConfig: SECRET });
    assert.equal(readFileSync(join(dir, "exec-207.stdin"), "utf8"), SECRET + "\n");
    assert.deepEqual(readFileSync(join(dir, "config-207.argv"), "utf8").split("\n").filter(Boolean), ["config", "207", "--current"]);
  });

  test("refuses an oversized or non-base64 config instead of passing on a truncated or foreign payload", async () => {
    for (const [cfg, why] of [["QUFB".repeat(16_385), /larger than 64 KiB/], ["not base64; rm -rf /", /not a base64 JIT config/]] as const) {
      await assert.rejects(delivery().deliver({ node: "pve", vmid: 205, runner: "runner-ff66", jitConfig: cfg }), (err: Error) => {
        assert.match(err.message, why);
        return true;
      });
      assert.equal(existsSync(join(dir, "exec-205.stdin")), false, "nothing reached the container");
    }
  });

  test("a missing helper is a clear error", async () => {
    const d = new PctHelperDelivery({ command: [join(dir, "no-such-helper")], env, logger: pino({ level: "silent" }) });
    await assert.rejects(d.deliver({ node: "pve", vmid: 201, runner: "runner-aa11", jitConfig: SECRET }), /could not start/);
  });
});
