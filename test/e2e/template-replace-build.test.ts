// `template deploy --replace` with the real build: the template stack applied by terraform on the
// stand-ins (root@pam password, provider stand-in, `pct` stand-in) under a new vmid, next to the
// old template while a runner cloned from it is busy; then the listener switches, the next runner is
// a clone of the new template, and the old one is destroyed once its last clone is gone.
import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { replaceTemplates } from "../../cli/template-replace.js";
import { applyTemplateStack } from "../../cli/demo-template.js";
import { templateSpec } from "../../stacks/main.js";
import { pinnedRunnerVersion } from "../../stacks/runner-pin.js";
import { startE2E, waitFor, containersLeft, quietLogger } from "./harness.js";

test("template deploy --replace builds the new template with the template stack next to the old one while a clone of it runs a job, and the listener switches", { timeout: 300_000 }, async () => {
  const e = await startE2E({ timeScale: 0.1, overrides: { templateRetireMs: 200 } });
  try {
    const admin = async <T>(method: "GET" | "POST", path: string, body?: unknown): Promise<T> => {
      const res = await fetch(e.service.adminUrl! + path, {
        method,
        headers: { authorization: `Bearer ${e.world.secrets.adminToken}`, ...(body !== undefined ? { "content-type": "application/json" } : {}) },
        body: body !== undefined ? JSON.stringify(body) : undefined,
      });
      const json = (await res.json()) as T & { error?: string };
      if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${json.error ?? ""}`);
      return json;
    };
    // A long job on a clone of the old template: its base volume is in use throughout the build.
    const first = await e.world.github.createJob({ repo: "acme/app", labels: ["self-hosted", "linux"], durationMs: 600_000 });
    const firstRunner = await waitFor("the first job's runner busy", () => e.service.store.runners(["busy"])[0], 120_000);
    assert.equal(firstRunner.template, "pve/9000");

    const workDir = join(e.world.dir, "template-work");
    const out: string[] = [];
    const replaced = await replaceTemplates(
      {
        admin,
        out: (l) => out.push(l),
        build: (spec, dir) => applyTemplateStack(e.world, spec, dir, quietLogger()),
      },
      { spec: templateSpec(e.world.config), workDir },
    );
    assert.deepEqual(replaced, ["pve/9001"], out.join("\n"));
    const built = e.world.pve.containers().find((c) => c.vmid === 9001);
    assert.ok(built?.template, "the stack left a template at the new vmid");
    assert.deepEqual(built.tags, ["pve-runners-template", `runner-${pinnedRunnerVersion()}`]);
    assert.ok(e.world.pve.containers().find((c) => c.vmid === 9000 && c.template), "the old template stays while its clone runs");

    // The next job's runner is a linked clone of the new template.
    const second = await e.world.github.createJob({ repo: "acme/app", labels: ["self-hosted", "linux"], durationMs: 300 });
    const secondDone = await waitFor("the second job completed", () => e.world.github.jobs().find((j) => j.id === second.id && j.status === "completed"), 120_000);
    assert.equal(secondDone.conclusion, "success");
    const secondRunner = e.service.store.getRunner(secondDone.runnerName!);
    assert.equal(secondRunner?.template, "pve/9001");

    // The first job ends; its runner goes, and with it the old template.
    e.world.github.cancelJob(first.id);
    await waitFor("the old template destroyed", () => !e.world.pve.containers().some((c) => c.vmid === 9000), 120_000);
    await waitFor("no container left", async () => (await containersLeft(e)).length === 0, 60_000);
    assert.ok(e.world.pve.containers().find((c) => c.vmid === 9001 && c.template), "the new template serves on");
  } finally {
    await e.stop();
  }
});
