// The documented PVE role is enough for the whole pipeline (every other e2e test runs with it),
// and one privilege fewer breaks it with an error that names the missing privilege.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { pino } from "pino";
import { startE2E, waitFor, containersLeft } from "./harness.js";
import { PVE_RUNNERS_ACLS, SIM_TOKENS, type TokenDef } from "../../sim/pve/index.js";

const without = (priv: string): TokenDef => ({
  id: `pve-runners@pve!no-${priv.toLowerCase().replace(/\./g, "-")}`,
  secret: "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0",
  acls: PVE_RUNNERS_ACLS().map((a) => ({ ...a, privs: a.privs.filter((p) => p !== priv) })),
});

describe("least privilege on Proxmox", { concurrency: 1 }, () => {
  test("the e2e world runs with exactly the documented role", () => {
    const role = PVE_RUNNERS_ACLS().flatMap((a) => a.privs).sort();
    assert.deepEqual(role, ["Datastore.AllocateSpace", "SDN.Use", "VM.Allocate", "VM.Audit", "VM.Clone", "VM.Config.CPU", "VM.Config.Memory", "VM.Config.Network", "VM.Config.Options", "VM.PowerMgmt"]);
    assert.deepEqual(SIM_TOKENS.runners.acls, PVE_RUNNERS_ACLS());
  });

  test("with exactly the role, every runner's NIC is behind PVE's firewall with the runner baseline, and its firewall file goes with it", async () => {
    const e = await startE2E();
    try {
      await e.world.github.createJob({ repo: "acme/app", labels: ["self-hosted", "linux"], durationMs: 250_000 });
      const ct = await waitFor("a runner with its firewall options", () => {
        const c = e.world.pve.containers().find((x) => !x.template && x.tags.includes("pve-runners") && e.world.pve.firewall(x.vmid)?.options.enable === "1");
        return c ?? null;
      }, 90_000, 20);
      assert.match(ct.config.net0, /(^|,)firewall=1(,|$)/);
      const fw = e.world.pve.firewall(ct.vmid);
      assert.equal(fw?.options.policy_in, "DROP");
      assert.equal(fw?.options.macfilter, "1");
      assert.equal(fw?.options.radv, "0");
      await waitFor("the runner destroyed", async () => ((await containersLeft(e)).length === 0 ? true : null), 90_000);
      assert.equal(e.world.pve.firewall(ct.vmid), null);
    } finally {
      await e.stop();
    }
  });

  for (const [priv, path] of [["VM.PowerMgmt", /\/vms\/\d+, VM\.PowerMgmt/], ["VM.Config.Memory", /\/vms\/\d+, VM\.Config\.Memory/]] as const) {
    test(`without ${priv} no runner can be made, the error names it, and nothing is left`, async () => {
      const logged: Array<Record<string, unknown>> = [];
      const logger = pino({ level: "error" }, { write: (s: string) => void logged.push(JSON.parse(s) as Record<string, unknown>) });
      const e = await startE2E({ listenerToken: without(priv), logger });
      try {
        await e.world.github.createJob({ repo: "acme/app", labels: ["self-hosted", "linux"], durationMs: 500 });
        const r = await waitFor("the runner given up", () => e.service.store.runners(["failed"])[0], 90_000);
        assert.match(r.lastError ?? "", /Permission check failed/);
        assert.match(r.lastError ?? "", path);
        assert.deepEqual(await containersLeft(e), [], "failed attempts were cleaned up");
        // The person who pushed hears of it on their commit, once, as an infrastructure failure.
        const checks = await waitFor("a check run", () => (e.world.github.checkRuns().length ? e.world.github.checkRuns() : null), 10_000);
        assert.equal(checks.length, 1);
        assert.equal(checks[0].conclusion, "failure");
        assert.equal(checks[0].headSha, e.world.github.jobs()[0].headSha);
        assert.match(checks[0].output?.title ?? "", /infrastructure failed, not your code/);
        // Readable by anyone on a public repository: no error text, a reference to the log instead.
        const summary = checks[0].output?.summary ?? "";
        assert.doesNotMatch(summary, path);
        assert.doesNotMatch(summary, /Permission check failed|\/vms\//);
        const ref = /reference `([^`]+)`/.exec(summary)?.[1];
        assert.ok(ref?.startsWith(`${r.name}/`), `the summary names a reference starting with the runner: ${summary}`);
        const line = logged.find((l) => l.ref === ref);
        assert.ok(line, "the reference is in the listener's log");
        assert.match(String(line.lastError), path, "next to the full error");
      } finally {
        await e.stop();
      }
    });
  }
});
