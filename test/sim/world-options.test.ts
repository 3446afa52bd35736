// startWorld's knobs for acceptance tests: the fake GitHub's installations, and the provider
// stand-in's env knobs reaching terraform when the listener runs as its own process (`serve`
// builds terraform's environment from its own, see listener/adapters/terraform/terraform.ts).
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createAppAuth } from "@octokit/auth-app";
import { Octokit } from "@octokit/rest";
import { pino } from "pino";
import { startWorld, type World } from "../../sim/world.js";
import { Terraform } from "../../listener/adapters/terraform/terraform.js";
import { captureLog, writeStack } from "../fixtures/terraform/helpers.js";
import { join } from "node:path";

const quiet = { debug() {}, info() {}, warn() {}, error() {} };
const logger = pino({ level: "silent" });

async function installationsOf(world: World): Promise<Array<[number, string, string]>> {
  const app = new Octokit({ log: quiet, baseUrl: world.github.url, authStrategy: createAppAuth, auth: { appId: world.github.appId, privateKey: world.github.appPrivateKeyPem } });
  const { data } = await app.rest.apps.listInstallations();
  return data.map((i) => [i.id, i.account && "login" in i.account ? i.account.login : "", i.target_type]);
}

describe("startWorld options", () => {
  const worlds: World[] = [];
  after(async () => {
    await Promise.all(worlds.map((w) => w.stop()));
  });

  test("installations are passed to the fake GitHub; without them the default acme + solo", async () => {
    const custom = await startWorld({ logger, installations: [{ id: 5150, account: "umbrella", type: "Organization", repos: ["umbrella/api", "umbrella/web"] }] });
    worlds.push(custom);
    assert.deepEqual(await installationsOf(custom), [[5150, "umbrella", "Organization"]]);
    const job = await custom.github.createJob({ repo: "umbrella/web", labels: ["self-hosted"] });
    assert.equal(job.status, "queued", "its repos take jobs");

    const plain = await startWorld({ logger });
    worlds.push(plain);
    assert.deepEqual(await installationsOf(plain), [[4242, "acme", "Organization"], [4343, "solo", "User"]]);
  });

  test("own process: the provider's PVE_SIM_PROVIDER_* knobs in serve's environment reach terraform, other PVE_SIM_* do not", async () => {
    const world = await startWorld({ logger });
    worlds.push(world);
    assert.equal(world.serveEnv.PVE_SIM_PROVIDER_POLL_MS, world.terraformEnv.PVE_SIM_PROVIDER_POLL_MS, "the world exports the knobs for the child process");
    assert.equal(world.serveEnv.CREDENTIALS_DIRECTORY, join(world.dir, "credentials"));
    // What `serve` does: no terraformEnv override, terraform's env built from the process's own.
    const saved = { ...process.env };
    Object.assign(process.env, world.serveEnv, { PVE_SIM_TOKEN: "root@pam!sim=not-for-terraform" });
    try {
      const tf = new Terraform({ binary: "terraform", sharedInitDir: join(world.dir, "tf-env", "shared-init"), logger: captureLog().logger });
      const check = [
        `test "$PVE_SIM_PROVIDER_POLL_MS" = "${world.terraformEnv.PVE_SIM_PROVIDER_POLL_MS}"`,
        `test -z "$PVE_SIM_TOKEN"`,
        `test -z "$CREDENTIALS_DIRECTORY"`,
      ].join(" && ");
      const s = await writeStack(join(world.dir, "tf-env", "runner-env"), { r: { command: check } });
      await tf.prepare(s.file);
      const result = await tf.apply(s.workingDir, { runner: "runner-env" });
      assert.equal(result.changes?.add, 1, "the check inside terraform passed");
    } finally {
      for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
      Object.assign(process.env, saved);
    }
  });
});
