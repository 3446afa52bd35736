// The real listener's two ports under slow and curious clients: both cut off a request whose
// headers never end, and the webhook port's /healthz says "ok" and nothing else.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startE2E } from "../e2e/harness.js";
import { slowloris } from "../fixtures/slowloris.js";

test("webhook and admin listeners: slowloris cut off after the header timeout; /healthz is exactly ok", async () => {
  const e = await startE2E({ overrides: { serverLimits: { headersTimeoutMs: 300, requestTimeoutMs: 1_000 } } });
  try {
    const [hook, admin] = await Promise.all([slowloris(e.service.url, 5_000), slowloris(e.service.adminUrl!, 5_000)]);
    assert.deepEqual([hook.closed, admin.closed], [true, true], "both connections cut off");
    assert.match(hook.answer, /^HTTP\/1\.1 408 /);
    assert.match(admin.answer, /^HTTP\/1\.1 408 /);
    // main answered {"ok":true,"runners":…,"queued":…} to anyone who asked.
    const res = await fetch(`${e.service.url}/healthz`);
    assert.equal(res.status, 200);
    assert.equal(await res.text(), "ok");
  } finally {
    await e.stop();
  }
});
