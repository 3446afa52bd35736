// Comparing a secret someone sent with the one we hold, in time that does not depend on how much
// of it was right: both sides are SHA-256 digests of equal length, compared with timingSafeEqual.
import { createHash, timingSafeEqual } from "node:crypto";

/** The digest a held secret is kept as, for sameSecret. */
export const secretDigest = (s: string): Buffer => createHash("sha256").update(s).digest();

/** Equal-length digests: the compare takes the same time whatever was sent. */
export function sameSecret(given: string, want: Buffer): boolean {
  return timingSafeEqual(secretDigest(given), want);
}
