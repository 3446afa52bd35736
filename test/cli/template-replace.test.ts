// `template deploy --replace`: each copy is built under the vmid the listener suggests, in a work
// dir of its own, and the listener is told only after the build succeeded.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { replaceTemplates, replacementDir, templatesText, type ReplaceDeps } from "../../cli/template-replace.js";
import type { TemplateStackSpec } from "../../stacks/template-stack.js";

const spec = { endpoint: "https://pve:8006/", node: "pve", vmid: 9000, bridge: "vmbr1", datastore: "local-lvm", templateDir: "/t" } as TemplateStackSpec;
const view = {
  copies: [
    { configured: "pve/9000", active: "pve/9001", node: "pve", sourceNode: "pve", vmid: 9001 },
    { configured: "pve2/9010", active: "pve2/9010", node: "pve2", sourceNode: "pve2", vmid: 9010 },
  ],
  replacements: [],
};

function fake(o: { failBuild?: number } = {}) {
  const calls: string[] = [];
  const built: Array<{ node: string; vmid: number; dir: string }> = [];
  let next = 9002;
  const deps: ReplaceDeps = {
    admin: async <T>(method: string, path: string, body?: unknown) => {
      calls.push(`${method} ${path}${body ? ` ${JSON.stringify(body)}` : ""}`);
      if (path === "/api/templates") return view as T;
      if (path.startsWith("/api/templates/vmid")) return { vmid: next++ } as T;
      const b = body as { from: string; vmid: number };
      return { to: `${b.from.split("/")[0]}/${b.vmid}` } as T;
    },
    build: async (s, dir) => {
      calls.push(`build ${s.node}/${s.vmid}`);
      if (s.vmid === o.failBuild) throw new Error("terraform apply failed");
      built.push({ node: s.node, vmid: s.vmid, dir });
    },
    out: () => {},
  };
  return { deps, calls, built };
}

describe("template deploy --replace", () => {
  test("every copy: built at the suggested vmid on its own node in its own dir, then the listener is told", async () => {
    const f = fake();
    assert.deepEqual(await replaceTemplates(f.deps, { spec, workDir: "/w" }), ["pve/9002", "pve2/9003"]);
    assert.deepEqual(f.built, [
      { node: "pve", vmid: 9002, dir: replacementDir("/w", 9002) },
      { node: "pve2", vmid: 9003, dir: replacementDir("/w", 9003) },
    ]);
    assert.deepEqual(f.calls, [
      "GET /api/templates",
      "GET /api/templates/vmid?copy=pve%2F9001",
      "build pve/9002",
      'POST /api/templates/replace {"from":"pve/9001","vmid":9002}',
      "GET /api/templates/vmid?copy=pve2%2F9010",
      "build pve2/9003",
      'POST /api/templates/replace {"from":"pve2/9010","vmid":9003}',
    ]);
  });

  test("one copy by its configured name, with a given vmid; --vmid alone with several copies is refused", async () => {
    const f = fake();
    await replaceTemplates(f.deps, { spec, workDir: "/w", copy: "pve/9000", vmid: 9100 });
    assert.deepEqual(f.built, [{ node: "pve", vmid: 9100, dir: replacementDir("/w", 9100) }]);
    assert.ok(f.calls.includes('POST /api/templates/replace {"from":"pve/9001","vmid":9100}'));
    await assert.rejects(replaceTemplates(fake().deps, { spec, workDir: "/w", vmid: 9100 }), /--vmid names one template: add --copy/);
    await assert.rejects(replaceTemplates(fake().deps, { spec, workDir: "/w", copy: "pve3/1" }), /none of the template copies/);
  });

  test("a failed build tells the listener nothing", async () => {
    const f = fake({ failBuild: 9002 });
    await assert.rejects(replaceTemplates(f.deps, { spec, workDir: "/w" }), /terraform apply failed/);
    assert.ok(!f.calls.some((c) => c.startsWith("POST")), f.calls.join("\n"));
  });

  test("template list: each copy as configured and active, each replacement with what still holds it", () => {
    const text = templatesText({
      ...view,
      replacements: [
        { from: "pve/9000", toNode: "pve", toVmid: 9001, to: "pve/9001", replacedAt: Date.UTC(2026, 0, 1), destroyedAt: null, runners: 2 },
      ],
    });
    assert.match(text, /pve\/9000\s+pve\/9001\s+pve\n/);
    assert.match(text, /pve\/9000\s+pve\/9001\s+2026-01-01T00:00:00.000Z\s+kept: 2 runner\(s\) on it/);
  });
});
