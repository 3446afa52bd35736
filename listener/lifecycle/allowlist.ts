// Which repositories may have runners made for them. Nothing is allowed implicitly.
export interface Allowlist {
  readonly repos?: readonly string[];
  readonly orgs?: readonly string[];
  readonly any?: boolean;
}

export function repoAllowed(repoFullName: string, allow: Allowlist): boolean {
  if (allow.any) return true;
  const repo = repoFullName.toLowerCase();
  const owner = repo.split("/", 1)[0];
  return (allow.repos ?? []).some((r) => r.toLowerCase() === repo) || (allow.orgs ?? []).some((o) => o.toLowerCase() === owner);
}
