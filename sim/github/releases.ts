// The public releases of actions/runner, as the fake GitHub lists them: what the listener asks to
// tell how far behind the template's runner is. Settable by tests (GitHubSim.setRunnerReleases,
// POST /_sim/releases); by default one release, the version template/provision.sh pins.
import { pinnedRunnerVersion } from "../../stacks/runner-pin.js";

export interface SimReleaseSpec {
  /** "2.336.0" or "v2.336.0": the tag is always v-prefixed, as actions/runner tags them. */
  version: string;
  /** ISO 8601 or ms since the epoch; GitHub's timestamps are whole seconds. */
  publishedAt: string | number;
  prerelease?: boolean;
  draft?: boolean;
}

export interface SimRelease {
  id: number;
  tagName: string;
  /** created_at: the date of the release's commit; "latest" sorts by it (GitHub REST docs). */
  createdAt: string;
  publishedAt: string | null;
  prerelease: boolean;
  draft: boolean;
}

const VERSION = /^v?\d+\.\d+\.\d+$/;

/** GitHub's timestamp format: UTC, whole seconds, `Z`. */
export function githubTime(at: string | number): string {
  const ms = typeof at === "number" ? at : Date.parse(at);
  if (!Number.isFinite(ms)) throw new Error(`not a time: ${at}`);
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace(/\.\d{3}Z$/, "Z");
}

export class RunnerReleases {
  private list: SimRelease[] = [];
  private nextId = 250_000_000;

  constructor() {
    this.set([{ version: pinnedRunnerVersion(), publishedAt: Date.now() - 86_400_000 }]);
  }

  /** Replaces the releases. */
  set(specs: readonly SimReleaseSpec[]): void {
    this.list = specs.map((s) => {
      if (!VERSION.test(s.version)) throw new Error(`not a runner version: ${s.version}`);
      const published = githubTime(s.publishedAt);
      return { id: this.nextId++, tagName: `v${s.version.replace(/^v/, "")}`, createdAt: published, publishedAt: s.draft ? null : published, prerelease: !!s.prerelease, draft: !!s.draft };
    });
  }

  /** What the API lists to everyone but the repo's writers: no drafts; newest first. */
  published(): SimRelease[] {
    return this.list.filter((r) => !r.draft).sort((a, b) => Date.parse(b.createdAt) - Date.parse(a.createdAt) || b.id - a.id);
  }

  /** "The most recent non-prerelease, non-draft release, sorted by the created_at attribute." */
  latest(): SimRelease | undefined {
    return this.published().find((r) => !r.prerelease);
  }
}
