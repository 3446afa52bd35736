// go-plugin's server handshake (server.go in hashicorp/go-plugin): the magic cookie check, the
// protocol version negotiation, and the one line on stdout that tells terraform where to connect:
//   CORE-PROTOCOL-VERSION|APP-PROTOCOL-VERSION|NETWORK|ADDRESS|PROTOCOL|SERVER-CERT
export const MAGIC_COOKIE_KEY = "TF_PLUGIN_MAGIC_COOKIE";
export const MAGIC_COOKIE_VALUE = "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2";
/** go-plugin's CoreProtocolVersion. */
export const CORE_PROTOCOL_VERSION = 1;
/** The terraform plugin protocol this stand-in speaks. */
export const APP_PROTOCOL_VERSION = 6;

/** go-plugin's words when a plugin binary is run by hand. */
export const NOT_A_COMMAND =
  "This binary is a plugin. These are not meant to be executed directly.\n" +
  "Please execute the program that consumes these plugins, which will\n" +
  "load any plugins automatically\n";

export function hasMagicCookie(env: NodeJS.ProcessEnv): boolean {
  return env[MAGIC_COOKIE_KEY] === MAGIC_COOKIE_VALUE;
}

/**
 * Whether the client accepts protocol 6. go-plugin still answers with its own version when there is
 * no match (the client then reports the mismatch), so this only decides what we log.
 */
export function clientAcceptsV6(env: NodeJS.ProcessEnv): boolean {
  const vs = env.PLUGIN_PROTOCOL_VERSIONS;
  if (!vs) return true; // a legacy client that sends no list
  return vs.split(",").some((s) => Number.parseInt(s.trim(), 10) === APP_PROTOCOL_VERSION);
}

export function handshakeLine(address: string, serverCert: string): string {
  return `${CORE_PROTOCOL_VERSION}|${APP_PROTOCOL_VERSION}|tcp|${address}|grpc|${serverCert}\n`;
}
