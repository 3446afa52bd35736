// Before the listener touches its state dir: are its ports free? A busy port is almost always a
// second pve-runners (or another service on 8790/8791), and one clear line beats a half-started
// service and an EADDRINUSE stack trace.
import { createServer } from "node:net";

export interface ListenAddress {
  what: string;
  host: string;
  port: number;
}

export class PortInUseError extends Error {
  constructor(
    readonly address: ListenAddress,
    readonly code: string,
  ) {
    const where = `${address.host.includes(":") ? `[${address.host}]` : address.host}:${address.port}`;
    super(
      code === "EADDRINUSE"
        ? `${where} (${address.what}) is in use (is pve-runners already running?)`
        : code === "EACCES"
          ? `not allowed to listen on ${where} (${address.what}): ports below 1024 need privileges`
          : code === "EADDRNOTAVAIL"
            ? `${where} (${address.what}): no such address on this host`
            : `cannot listen on ${where} (${address.what}): ${code}`,
    );
    this.name = "PortInUseError";
  }
}

/** Binds each address and lets it go at once; throws PortInUseError for the first that fails. Port 0 is always free. */
export async function assertPortsFree(addresses: ListenAddress[]): Promise<void> {
  for (const a of addresses) {
    if (a.port === 0) continue;
    await new Promise<void>((resolve, reject) => {
      const probe = createServer();
      probe.once("error", (err: NodeJS.ErrnoException) => reject(new PortInUseError(a, err.code ?? String(err))));
      probe.listen({ host: a.host, port: a.port, exclusive: true }, () => probe.close(() => resolve()));
    });
  }
}
