// go-plugin AutoMTLS, server side: terraform passes its own throw-away client certificate in
// PLUGIN_CLIENT_CERT; the plugin answers with a fresh self-signed certificate shaped like
// go-plugin's generateCert (mtls.go: ECDSA, CN and SAN "localhost", O "HashiCorp", a CA, client and
// server auth), sends its DER in the handshake line, and serves TLS that requires that client cert.
// node:crypto makes the key and signs (an ECDSA key takes microseconds, RSA-2048 ~150 ms per
// provider start); node-forge only assembles the ASN.1.
import { generateKeyPairSync, randomBytes, sign } from "node:crypto";
import forge from "node-forge";

export interface ServerCert {
  certPem: string;
  keyPem: string;
  /** The handshake's sixth field: base64 of the DER, RawStdEncoding (no padding) as go-plugin reads it. */
  handshakeField: string;
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

export function generateServerCert(): ServerCert {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const name = forge.pki.distinguishedNameToAsn1({
    attributes: [
      { type: forge.pki.oids.commonName, value: "localhost", valueTagClass: asn1.Type.UTF8 },
      { type: forge.pki.oids.organizationName, value: "HashiCorp", valueTagClass: asn1.Type.UTF8 },
    ],
  } as never);
  // setExtensions turns the named extensions into their DER values.
  const carrier = forge.pki.createCertificate();
  carrier.setExtensions([
    { name: "basicConstraints", cA: true, critical: true },
    { name: "keyUsage", digitalSignature: true, keyEncipherment: true, keyAgreement: true, keyCertSign: true, critical: true },
    { name: "extKeyUsage", serverAuth: true, clientAuth: true },
    { name: "subjectAltName", altNames: [{ type: 2, value: "localhost" }] },
  ]);
  const spki = publicKey.export({ type: "spki", format: "der" });
  const now = Date.now();
  const tbs = seq([
    asn1.create(asn1.Class.CONTEXT_SPECIFIC, 0, true, [asn1.create(asn1.Class.UNIVERSAL, asn1.Type.INTEGER, false, asn1.integerToDer(2).getBytes())]),
    // Positive (leading 0x01) and 16 bytes: Go rejects negative serials.
    asn1.create(asn1.Class.UNIVERSAL, asn1.Type.INTEGER, false, Buffer.concat([Buffer.of(1), randomBytes(15)]).toString("binary")),
    seq([oid(ECDSA_WITH_SHA256)]),
    name,
    seq([time(new Date(now - 30_000)), time(new Date(now + 262_980 * 3_600_000))]),
    name,
    asn1.fromDer(forge.util.createBuffer(spki.toString("binary"))),
    // Exported by node-forge but missing from its type definitions.
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
    handshakeField: b64.replace(/=+$/, ""),
  };
}
