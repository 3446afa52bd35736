// GitHub-shaped error bodies: `{message, documentation_url, status}`.
const DOCS = "https://docs.github.com/rest";

export class GitHubError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly extra: Record<string, unknown> = {},
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }

  body(): Record<string, unknown> {
    return { message: this.message, documentation_url: (this.extra.documentation_url as string) ?? DOCS, ...this.extra, status: String(this.status) };
  }
}

export const notFound = () => new GitHubError(404, "Not Found", { documentation_url: DOCS });
export const requiresAuth = () => new GitHubError(401, "Requires authentication", { documentation_url: DOCS });
export const badCredentials = () => new GitHubError(401, "Bad credentials", { documentation_url: DOCS });
export const jwtUndecodable = () =>
  new GitHubError(401, "A JSON web token could not be decoded", {
    documentation_url: "https://docs.github.com/rest/apps/apps#get-the-authenticated-app",
  });
export const notAccessible = () =>
  new GitHubError(403, "Resource not accessible by integration", { documentation_url: DOCS });

/** 422 the way GitHub reports body validation problems. */
export function validationFailed(field: string, message: string, resource = "Runner"): GitHubError {
  return new GitHubError(422, "Validation Failed", {
    errors: [{ resource, field, code: "invalid", message }],
    documentation_url: "https://docs.github.com/rest/actions/self-hosted-runners",
  });
}
