// The fixed world the fake GitHub serves: App installations, their accounts and repos,
// and each org's runner groups. Names are case-insensitive like GitHub's.
export interface WorldInstallationSpec {
  id: number;
  account: string;
  type: "Organization" | "User";
  repos: string[];
  /**
   * What the installation grants, when it differs from what the App asks for (an owner who has not
   * accepted a permission the App added later, say). Default: the App's permissions.
   */
  permissions?: Record<string, string>;
}

export interface Account {
  login: string;
  id: number;
  type: "Organization" | "User";
  installationId: number;
}

export interface Repo {
  id: number;
  name: string;
  fullName: string;
  owner: Account;
  installationId: number;
  private: boolean;
}

export interface Installation {
  id: number;
  account: Account;
  repos: Repo[];
  createdAt: string;
  permissions?: Record<string, string>;
}

export interface RunnerGroup {
  id: number;
  name: string;
  default: boolean;
}

export const DEFAULT_INSTALLATIONS: WorldInstallationSpec[] = [
  { id: 4242, account: "acme", type: "Organization", repos: ["acme/app", "acme/infra"] },
  { id: 4343, account: "solo", type: "User", repos: ["solo/dotfiles"] },
];

/** Org runner groups: the built-in Default (1) plus a second one to exercise group choice. */
const ORG_RUNNER_GROUPS: RunnerGroup[] = [
  { id: 1, name: "Default", default: true },
  { id: 2, name: "ci", default: false },
];
/** Repo-level runners always belong to group 1 "Default". */
export const REPO_RUNNER_GROUP: RunnerGroup = { id: 1, name: "Default", default: true };

export class SimWorld {
  readonly installations = new Map<number, Installation>();
  private readonly accounts = new Map<string, Account>();
  private readonly repos = new Map<string, Repo>();

  constructor(specs: WorldInstallationSpec[] = DEFAULT_INSTALLATIONS) {
    let accountId = 9000;
    let repoId = 70000;
    const createdAt = "2025-01-01T00:00:00Z";
    for (const spec of specs) {
      const account: Account = { login: spec.account, id: ++accountId, type: spec.type, installationId: spec.id };
      this.accounts.set(spec.account.toLowerCase(), account);
      const repos = spec.repos.map((full): Repo => {
        const [owner, name] = full.split("/");
        if (owner.toLowerCase() !== spec.account.toLowerCase() || !name) {
          throw new Error(`repo ${full} does not belong to ${spec.account}`);
        }
        const repo: Repo = { id: ++repoId, name, fullName: `${account.login}/${name}`, owner: account, installationId: spec.id, private: true };
        this.repos.set(repo.fullName.toLowerCase(), repo);
        return repo;
      });
      this.installations.set(spec.id, { id: spec.id, account, repos, createdAt, ...(spec.permissions ? { permissions: { ...spec.permissions } } : {}) });
    }
  }

  repo(fullName: string): Repo | undefined {
    return this.repos.get(fullName.toLowerCase());
  }

  account(login: string): Account | undefined {
    return this.accounts.get(login.toLowerCase());
  }

  org(login: string): Account | undefined {
    const a = this.account(login);
    return a?.type === "Organization" ? a : undefined;
  }

  runnerGroups(org: Account): RunnerGroup[] {
    return org.type === "Organization" ? ORG_RUNNER_GROUPS : [];
  }
}
