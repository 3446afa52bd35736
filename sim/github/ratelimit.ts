// Primary rate limit: a request budget per credential per hour, reported in x-ratelimit-*.
import { GitHubError } from "./errors.js";

interface Window {
  used: number;
  resetAt: number; // epoch seconds
}

export interface RateLimitResult {
  headers: Record<string, string>;
  exceeded: boolean;
}

export class RateLimiter {
  private readonly windows = new Map<string, Window>();

  constructor(
    public authenticatedLimit = 5000,
    public unauthenticatedLimit = 60,
  ) {}

  /** Counts one request against `key` and returns the headers to send. */
  take(key: string, authenticated: boolean): RateLimitResult {
    const limit = authenticated ? this.authenticatedLimit : this.unauthenticatedLimit;
    const now = Math.floor(Date.now() / 1000);
    let w = this.windows.get(key);
    if (!w || w.resetAt <= now) {
      w = { used: 0, resetAt: now + 3600 };
      this.windows.set(key, w);
    }
    const exceeded = w.used >= limit;
    if (!exceeded) w.used++;
    return {
      exceeded,
      headers: {
        "x-ratelimit-limit": String(limit),
        "x-ratelimit-remaining": String(Math.max(0, limit - w.used)),
        "x-ratelimit-used": String(w.used),
        "x-ratelimit-reset": String(w.resetAt),
        "x-ratelimit-resource": "core",
      },
    };
  }

  reset(): void {
    this.windows.clear();
  }
}

export function primaryLimitExceeded(what: string): GitHubError {
  return new GitHubError(403, `API rate limit exceeded for ${what}. If you reach out to GitHub Support for help, please include the request ID.`, {
    documentation_url: "https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api",
  });
}
