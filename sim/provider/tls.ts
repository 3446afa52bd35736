// go-plugin AutoMTLS, server side: terraform passes its own throw-away client certificate in
// PLUGIN_CLIENT_CERT; the plugin answers with a fresh self-signed certificate shaped like
// go-plugin's generateCert (mtls.go: ECDSA, CN and SAN "localhost", O "HashiCorp", a CA, client and
// server auth), sends its DER in the handshake line, and serves TLS that requires that client cert.
// node:crypto makes the key and signs (an ECDSA key takes microseconds, RSA-2048 ~150 ms per
// provider start); node-forge only assembles the ASN.1.
import { generateSelfSignedCert } from "../../listener/http/self-signed-cert.js";

export interface ServerCert {
  certPem: string;
  keyPem: string;
  /** The handshake's sixth field: base64 of the DER, RawStdEncoding (no padding) as go-plugin reads it. */
  handshakeField: string;
}

/** go-plugin's generateCert: CN and SAN "localhost", O "HashiCorp", a CA for server and client auth, 30 years. */
export function generateServerCert(): ServerCert {
  const { certPem, keyPem, der } = generateSelfSignedCert({ commonName: "localhost", organization: "HashiCorp", dnsNames: ["localhost"], mutual: true, notBeforeSkewMs: 30_000, validDays: 262_980 / 24 });
  return { certPem, keyPem, handshakeField: der.toString("base64").replace(/=+$/, "") };
}
