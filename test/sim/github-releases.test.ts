// The fake GitHub's actions/runner releases: GitHub's REST "Releases" answers, to anyone (a public
// repository), settable by tests and through /_sim/releases.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Octokit } from "@octokit/rest";
import { createAppAuth } from "@octokit/auth-app";
import { GitHubSim } from "../../sim/github/index.js";
import { pinnedRunnerVersion } from "../../stacks/runner-pin.js";

const quiet = { debug() {}, info() {}, warn() {}, error() {} };

describe("fake GitHub: actions/runner releases", () => {
  const sim = new GitHubSim({ timeScale: 0.01 });
  let anon: Octokit;
  before(async () => {
    await sim.start(0, "127.0.0.1");
    anon = new Octokit({ log: quiet, baseUrl: sim.url });
  });
  after(() => sim.stop());

  test("by default one release, the version provision.sh pins, served anonymously with rate-limit headers", async () => {
    const r = await anon.rest.repos.getLatestRelease({ owner: "actions", repo: "runner" });
    assert.equal(r.data.tag_name, `v${pinnedRunnerVersion()}`);
    assert.match(r.data.published_at ?? "", /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/, "GitHub's timestamps: UTC, whole seconds");
    assert.equal(r.headers["x-ratelimit-limit"], "60");
    for (const k of ["url", "html_url", "assets_url", "upload_url", "tarball_url", "zipball_url", "id", "node_id", "tag_name", "target_commitish", "name", "draft", "prerelease", "created_at", "published_at", "author", "assets", "body"])
      assert.ok(k in r.data, `release has ${k}`);
  });

  test("latest skips prereleases and drafts; the list hides drafts, newest first, paged with Link", async () => {
    sim.setRunnerReleases([
      { version: "2.336.0", publishedAt: "2026-01-01T00:00:00.900Z" },
      { version: "v2.337.0", publishedAt: Date.parse("2026-02-01T00:00:00Z") },
      { version: "2.338.0", publishedAt: "2026-03-01T00:00:00Z", prerelease: true },
      { version: "2.339.0", publishedAt: "2026-03-02T00:00:00Z", draft: true },
    ]);
    const latest = await anon.rest.repos.getLatestRelease({ owner: "actions", repo: "runner" });
    assert.equal(latest.data.tag_name, "v2.337.0");
    const list = await anon.rest.repos.listReleases({ owner: "actions", repo: "runner", per_page: 2 });
    assert.deepEqual(list.data.map((r) => [r.tag_name, r.prerelease, r.published_at]), [["v2.338.0", true, "2026-03-01T00:00:00Z"], ["v2.337.0", false, "2026-02-01T00:00:00Z"]]);
    assert.match(list.headers.link ?? "", /page=2>; rel="next"/);
    const page2 = await anon.rest.repos.listReleases({ owner: "actions", repo: "runner", per_page: 2, page: 2 });
    assert.deepEqual(page2.data.map((r) => [r.tag_name, r.published_at]), [["v2.336.0", "2026-01-01T00:00:00Z"]], "whole seconds, rounded down");
  });

  test("an installation token reads it too; other repos have none; no release at all is a 404", async () => {
    const gh = new Octokit({ log: quiet, baseUrl: sim.url, authStrategy: createAppAuth, auth: { appId: sim.appId, privateKey: sim.appPrivateKeyPem, installationId: 4242 } });
    assert.equal((await gh.rest.repos.getLatestRelease({ owner: "actions", repo: "runner" })).status, 200);
    await assert.rejects(anon.rest.repos.getLatestRelease({ owner: "acme", repo: "app" }), { status: 404 });
    sim.setRunnerReleases([{ version: "2.340.0", publishedAt: Date.now(), prerelease: true }]);
    await assert.rejects(anon.rest.repos.getLatestRelease({ owner: "actions", repo: "runner" }), { status: 404 });
  });

  test("POST /_sim/releases replaces them; a bad version or time is a 400", async () => {
    const post = (body: unknown) => fetch(`${sim.url}/_sim/releases`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    const ok = await post({ releases: [{ version: "2.341.0", publishedAt: "2026-04-01T10:00:00+02:00" }] });
    assert.equal(ok.status, 200);
    assert.deepEqual(await ok.json(), [{ tag_name: "v2.341.0", published_at: "2026-04-01T08:00:00Z", prerelease: false }]);
    assert.equal((await post({ releases: [{ version: "latest", publishedAt: "2026-04-01T10:00:00Z" }] })).status, 400);
    assert.equal((await post({ releases: [{ version: "2.342.0", publishedAt: "yesterday" }] })).status, 400);
    assert.equal((await anon.rest.repos.getLatestRelease({ owner: "actions", repo: "runner" })).data.tag_name, "v2.341.0");
  });
});
