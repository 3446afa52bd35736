// Who is calling: the App (RS256 JWT signed with its private key) or an installation
// (a `ghs_` token minted by POST /app/installations/{id}/access_tokens).
import { createPublicKey, generateKeyPairSync, randomBytes } from "node:crypto";
import { errors as joseErrors, importSPKI, jwtVerify } from "jose";
import { GitHubError, badCredentials, jwtUndecodable, requiresAuth } from "./errors.js";
import type { Installation, SimWorld } from "./world.js";

export type Caller =
  | { kind: "app"; rateKey: string }
  | { kind: "installation"; installation: Installation; token: IssuedToken; rateKey: string };

export interface IssuedToken {
  token: string;
  installationId: number;
  expiresAt: number;
  /** Lower-cased full names the token is narrowed to; undefined = all of the installation's repos. */
  repositories?: Set<string>;
  permissions: Record<string, string>;
}

type VerifyKey = Awaited<ReturnType<typeof importSPKI>>;

const JWT_MAX_LIFETIME_S = 600;
const CLOCK_LEEWAY_S = 5;
const TOKEN_LIFETIME_MS = 60 * 60 * 1000;

export function generateAppKey(): string {
  const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  // GitHub hands out PKCS#1 ("BEGIN RSA PRIVATE KEY") .pem files.
  return privateKey.export({ type: "pkcs1", format: "pem" }) as string;
}

export function installationPermissions(inst: Installation): Record<string, string> {
  if (inst.permissions) return { ...inst.permissions };
  const perms: Record<string, string> = { actions: "read", administration: "write", checks: "write", metadata: "read" };
  if (inst.account.type === "Organization") perms.organization_self_hosted_runners = "write";
  return perms;
}

export class Authenticator {
  private readonly tokens = new Map<string, IssuedToken>();
  private publicKey?: VerifyKey;

  constructor(
    private readonly appId: number,
    private readonly privateKeyPem: string,
    private readonly world: SimWorld,
  ) {}

  private async key(): Promise<VerifyKey> {
    if (!this.publicKey) {
      const spki = createPublicKey(this.privateKeyPem).export({ type: "spki", format: "pem" }) as string;
      this.publicKey = await importSPKI(spki, "RS256");
    }
    return this.publicKey;
  }

  /** Resolves the Authorization header to a caller, or throws GitHub's 401. */
  async authenticate(header: string | undefined): Promise<Caller> {
    if (!header) throw requiresAuth();
    const m = /^(bearer|token)\s+(\S+)$/i.exec(header.trim());
    if (!m) throw badCredentials();
    const credential = m[2];
    if (credential.startsWith("ghs_")) return this.installationCaller(credential);
    if (m[1].toLowerCase() === "bearer" && credential.split(".").length === 3) {
      await this.verifyJwt(credential);
      return { kind: "app", rateKey: `app:${this.appId}` };
    }
    throw badCredentials();
  }

  private installationCaller(token: string): Caller {
    const issued = this.tokens.get(token);
    if (!issued || issued.expiresAt <= Date.now()) throw badCredentials();
    const installation = this.world.installations.get(issued.installationId);
    if (!installation) throw badCredentials();
    return { kind: "installation", installation, token: issued, rateKey: `token:${token}` };
  }

  private async verifyJwt(jwt: string): Promise<void> {
    let payload;
    try {
      ({ payload } = await jwtVerify(jwt, await this.key(), { algorithms: ["RS256"], clockTolerance: CLOCK_LEEWAY_S }));
    } catch (err) {
      if (err instanceof joseErrors.JWTExpired) {
        throw new GitHubError(
          401,
          "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires",
        );
      }
      throw jwtUndecodable();
    }
    const now = Math.floor(Date.now() / 1000);
    if (typeof payload.exp !== "number") throw jwtUndecodable();
    if (payload.exp - now > JWT_MAX_LIFETIME_S + CLOCK_LEEWAY_S) {
      throw new GitHubError(401, "'Expiration time' claim ('exp') is too far in the future");
    }
    if (typeof payload.iat !== "number" || payload.iat > now + CLOCK_LEEWAY_S) {
      throw new GitHubError(401, "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued");
    }
    if (String(payload.iss) !== String(this.appId)) throw jwtUndecodable();
  }

  mintToken(installation: Installation, repositories?: Set<string>): IssuedToken {
    const issued: IssuedToken = {
      token: `ghs_${randomBytes(27).toString("base64url").replace(/[-_]/g, "x").slice(0, 36)}`,
      installationId: installation.id,
      expiresAt: Date.now() + TOKEN_LIFETIME_MS,
      repositories,
      permissions: installationPermissions(installation),
    };
    this.tokens.set(issued.token, issued);
    return issued;
  }

  /** Test hook: tokens issued so far (optionally one installation's) expire now. */
  expireTokens(installationId?: number): void {
    for (const t of this.tokens.values()) if (installationId === undefined || t.installationId === installationId) t.expiresAt = Date.now() - 1;
  }
}
