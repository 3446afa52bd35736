// listener.trustProxy: which hops in front of the webhook port may say, by X-Forwarded-For, whom
// they forward for. The forms are those of express's `trust proxy` setting
// (expressjs/express lib/utils.js compileTrust, jshttp/proxy-addr): a hop count, or the proxies'
// addresses, CIDRs and the names loopback/linklocal/uniquelocal. `true` (every hop is a proxy) is
// refused: then the client's own leftmost X-Forwarded-For entry would be its address, so it could
// pick any address it likes.
import { isIP } from "node:net";

export type TrustProxy = false | number | string | string[];

const NAMES = new Set(["loopback", "linklocal", "uniquelocal"]);

/** The entries of a list form: a comma-separated string or an array of strings. */
const entriesOf = (v: string | string[]): string[] => (Array.isArray(v) ? v : v.split(",")).map((e) => e.trim());

function entryProblem(e: string): string | null {
  if (NAMES.has(e) || isIP(e)) return null;
  const m = /^(.+)\/(\d{1,3})$/.exec(e);
  if (m && isIP(m[1]) && Number(m[2]) <= (isIP(m[1]) === 4 ? 32 : 128)) return null;
  return `"${e}" is not an address, a CIDR (address/prefix) or one of ${[...NAMES].join(", ")}`;
}

/** One line saying what is wrong with a trustProxy value, or null when it is usable. */
export function trustProxyProblem(v: unknown): string | null {
  if (v === true)
    return "true would trust X-Forwarded-For from anyone (a client could claim any address): name the proxy instead, e.g. loopback for a reverse proxy on this host, its addresses or CIDRs, or a hop count";
  if (v === false) return null;
  if (typeof v === "number") return Number.isInteger(v) && v >= 1 && v <= 16 ? null : "a hop count is a whole number from 1 to 16";
  if (typeof v === "string" || (Array.isArray(v) && v.every((e) => typeof e === "string"))) {
    const entries = entriesOf(v as string | string[]);
    if (!entries.length || entries.every((e) => !e)) return "names no proxy";
    for (const e of entries) {
      const p = entryProblem(e);
      if (p) return p;
    }
    return null;
  }
  return "must be false, a hop count, or the proxies' addresses/CIDRs (a list or a comma-separated string)";
}

/** The value for express's `trust proxy` setting: never `true`. */
export function trustProxySetting(v: TrustProxy): false | number | string[] {
  const problem = trustProxyProblem(v);
  if (problem) throw new Error(`listener.trustProxy: ${problem}`);
  if (v === false || typeof v === "number") return v;
  return entriesOf(v);
}
