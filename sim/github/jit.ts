// The fake GitHub's encoded JIT runner config, shared by the fake GitHub (which mints it)
// and the simulated guest in the Proxmox simulator (which, like the real runner's
// `run.sh --jitconfig`, reads it to find the server and connect).
//
// Real configs are base64 of a JSON map of runner files (.runner, .credentials, ...), each
// itself base64. We keep that shape so code under test treats it as the opaque secret it is.

export interface JitRunnerFile {
  agentId: number;
  agentName: string;
  poolId: number;
  /** Base URL of the (fake) GitHub that minted the config: where the runner connects. */
  serverUrl: string;
  gitHubUrl: string;
  workFolder: string;
  ephemeral: true;
}

export interface JitCredentials {
  scheme: "OAuth";
  data: { clientId: string; authorizationUrl: string; token: string };
}

export interface DecodedJitConfig {
  runner: JitRunnerFile;
  credentials: JitCredentials;
}

const b64 = (s: string) => Buffer.from(s, "utf8").toString("base64");
const unb64 = (s: string) => Buffer.from(s, "base64").toString("utf8");

export function encodeJitConfig(cfg: DecodedJitConfig): string {
  return b64(
    JSON.stringify({
      ".runner": b64(JSON.stringify(cfg.runner)),
      ".credentials": b64(JSON.stringify(cfg.credentials)),
    }),
  );
}

/** Decodes a config minted by the fake GitHub; throws a plain Error on anything else. */
export function decodeJitConfig(encoded: string): DecodedJitConfig {
  try {
    const outer = JSON.parse(unb64(encoded.trim())) as Record<string, string>;
    const runner = JSON.parse(unb64(outer[".runner"])) as JitRunnerFile;
    const credentials = JSON.parse(unb64(outer[".credentials"])) as JitCredentials;
    if (typeof runner.agentId !== "number" || typeof runner.serverUrl !== "string" || !credentials?.data?.token) {
      throw new Error("missing fields");
    }
    return { runner, credentials };
  } catch (err) {
    throw new Error(`not a JIT runner config (${(err as Error).message})`, { cause: err });
  }
}
