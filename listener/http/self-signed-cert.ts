// A throw-away self-signed TLS certificate for a loopback server (the clone gate): ECDSA P-256 made
// and signed by node:crypto, the X.509 ASN.1 assembled with node-forge (forge cannot sign ECDSA).
// It is its own CA (basicConstraints CA:true) so a client can take the certificate itself as its only
// trust anchor — Go's crypto/x509 accepts a leaf that is in its root pool as a chain of one.
import { generateKeyPairSync, randomBytes, sign } from "node:crypto";
import { isIP } from "node:net";
import forge from "node-forge";

export interface SelfSignedCertOptions {
  /** Subject and issuer CN. */
  commonName: string;
  /** Subject and issuer O, if any. */
  organization?: string;
  /** SAN entries of type IP (e.g. "127.0.0.1"). */
  ips?: string[];
  /** SAN entries of type DNS (e.g. "localhost"). */
  dnsNames?: string[];
  /** Validity from now (default 825 days). */
  validDays?: number;
  /** notBefore this far in the past, for clock skew (default a minute). */
  notBeforeSkewMs?: number;
  /** Also for client auth, with keyEncipherment and keyAgreement (go-plugin's AutoMTLS certificate). */
  mutual?: boolean;
}

export interface SelfSignedCert {
  certPem: string;
  /** PKCS#8 PEM of the private key: keep it in memory. */
  keyPem: string;
  der: Buffer;
}

const { asn1 } = forge;
const ECDSA_WITH_SHA256 = "1.2.840.10045.4.3.2";

const seq = (items: forge.asn1.Asn1[]) => asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, items);
const oid = (id: string) => asn1.create(asn1.Class.UNIVERSAL, asn1.Type.OID, false, asn1.oidToDer(id).getBytes());
/** RFC 5280: UTCTime through 2049, GeneralizedTime after. */
const time = (d: Date) =>
  d.getUTCFullYear() < 2050
    ? asn1.create(asn1.Class.UNIVERSAL, asn1.Type.UTCTIME, false, asn1.dateToUtcTime(d))
    : asn1.create(asn1.Class.UNIVERSAL, asn1.Type.GENERALIZEDTIME, false, asn1.dateToGeneralizedTime(d));

export function generateSelfSignedCert(opts: SelfSignedCertOptions): SelfSignedCert {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const name = forge.pki.distinguishedNameToAsn1({
    attributes: [
      { type: forge.pki.oids.commonName, value: opts.commonName, valueTagClass: asn1.Type.UTF8 },
      ...(opts.organization ? [{ type: forge.pki.oids.organizationName, value: opts.organization, valueTagClass: asn1.Type.UTF8 }] : []),
    ],
  } as never);
  const altNames: Array<{ type: number; value?: string; ip?: string }> = [];
  for (const ip of opts.ips ?? []) {
    if (!isIP(ip)) throw new Error(`not an IP address: ${ip}`);
    altNames.push({ type: 7, ip });
  }
  for (const dns of opts.dnsNames ?? []) altNames.push({ type: 2, value: dns });
  // forge's setExtensions turns the named extensions into their DER values (IPs into octets).
  const carrier = forge.pki.createCertificate();
  carrier.setExtensions([
    { name: "basicConstraints", cA: true, critical: true },
    { name: "keyUsage", digitalSignature: true, keyCertSign: true, ...(opts.mutual ? { keyEncipherment: true, keyAgreement: true } : {}), critical: true },
    { name: "extKeyUsage", serverAuth: true, ...(opts.mutual ? { clientAuth: true } : {}) },
    ...(altNames.length > 0 ? [{ name: "subjectAltName", altNames }] : []),
  ]);
  const spki = publicKey.export({ type: "spki", format: "der" });
  const now = Date.now();
  const tbs = seq([
    asn1.create(asn1.Class.CONTEXT_SPECIFIC, 0, true, [asn1.create(asn1.Class.UNIVERSAL, asn1.Type.INTEGER, false, asn1.integerToDer(2).getBytes())]),
    // Positive (leading 0x01) and 16 bytes: Go rejects negative serials.
    asn1.create(asn1.Class.UNIVERSAL, asn1.Type.INTEGER, false, Buffer.concat([Buffer.of(1), randomBytes(15)]).toString("binary")),
    seq([oid(ECDSA_WITH_SHA256)]),
    name,
    seq([time(new Date(now - (opts.notBeforeSkewMs ?? 60_000))), time(new Date(now + (opts.validDays ?? 825) * 86_400_000))]),
    name,
    asn1.fromDer(forge.util.createBuffer(spki.toString("binary"))),
    // [3] { extensions }: exported by node-forge but missing from its type definitions.
    (forge.pki as unknown as { certificateExtensionsToAsn1(e: unknown[]): forge.asn1.Asn1 }).certificateExtensionsToAsn1(carrier.extensions),
  ]);
  const tbsDer = Buffer.from(asn1.toDer(tbs).getBytes(), "binary");
  const signature = sign("sha256", tbsDer, privateKey);
  const cert = seq([tbs, seq([oid(ECDSA_WITH_SHA256)]), asn1.create(asn1.Class.UNIVERSAL, asn1.Type.BITSTRING, false, "\x00" + signature.toString("binary"))]);
  const der = Buffer.from(asn1.toDer(cert).getBytes(), "binary");
  const b64 = der.toString("base64");
  return {
    certPem: `-----BEGIN CERTIFICATE-----\n${b64.replace(/.{64}/g, "$&\n").replace(/\n?$/, "\n")}-----END CERTIFICATE-----\n`,
    keyPem: privateKey.export({ type: "pkcs8", format: "pem" }) as string,
    der,
  };
}
