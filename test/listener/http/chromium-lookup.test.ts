// `npm test` on a newcomer's machine: the browser tests find Chromium on PATH (or CHROMIUM_PATH),
// skip with one line without it, and fail without it where CI is set (.ci/run sets CI).
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { ciSet, findChromium } from "../../fixtures/chromium.js";

const browserTest = fileURLToPath(new URL("./status-page-browser.test.js", import.meta.url));

function tempDir(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), "chromium-lookup-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test("Chromium is found on PATH (executables only), or only at CHROMIUM_PATH when that is set", (t) => {
  const dir = tempDir(t);
  const a = join(dir, "a");
  const b = join(dir, "b");
  for (const d of [a, b]) mkdirSync(d);
  writeFileSync(join(a, "chromium"), "not executable");
  writeFileSync(join(b, "chromium-browser"), "#!/bin/sh\n");
  chmodSync(join(b, "chromium-browser"), 0o755);
  assert.equal(findChromium({ PATH: `${a}:${b}` }), join(b, "chromium-browser"));
  assert.equal(findChromium({ PATH: a }), undefined);
  assert.equal(findChromium({ PATH: `${a}:${b}`, CHROMIUM_PATH: join(a, "chromium") }), undefined, "CHROMIUM_PATH is the only place looked at");
  assert.equal(findChromium({ PATH: "", CHROMIUM_PATH: join(b, "chromium-browser") }), join(b, "chromium-browser"));
});

test("CI counts as set for any value but empty, 0 or false", () => {
  for (const v of ["true", "1", "yes", "TRUE"]) assert.equal(ciSet({ CI: v }), true, v);
  for (const v of [undefined, "", "0", "false", "False"]) assert.equal(ciSet({ CI: v }), false, String(v));
});

test("without Chromium the browser tests skip with one line, and fail when CI is set", (t) => {
  const empty = tempDir(t);
  const run = (extra: Record<string, string>) =>
    spawnSync(process.execPath, ["--test", "--test-reporter=spec", browserTest], { encoding: "utf8", env: { PATH: empty, HOME: empty, ...extra }, timeout: 60_000 });
  const plain = run({});
  assert.equal(plain.status, 0, plain.stdout + plain.stderr);
  const skipLines = plain.stdout.split("\n").filter((l) => /Chromium not found/.test(l));
  assert.equal(skipLines.length, 1, plain.stdout);
  assert.match(skipLines[0], /apt-get install chromium, or set CHROMIUM_PATH/);
  for (const ci of ["true", "1"]) {
    const r = run({ CI: ci });
    assert.notEqual(r.status, 0, `CI=${ci}: a missing Chromium fails the run`);
    assert.match(r.stdout + r.stderr, /Chromium not found.*CI is set/);
  }
});
