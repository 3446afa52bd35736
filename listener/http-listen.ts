// Listens and resolves once the port is bound (or rejects with the bind error), with the base URL
// to reach it (IPv6 bracketed, port 0 resolved). Shared by the listener, its admin side and the sims.
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";

export async function listen(app: { listen(port: number, host: string): Server }, port: number, host: string): Promise<{ server: Server; url: string }> {
  const server = app.listen(port, host);
  await new Promise<void>((resolve, reject) => {
    server.once("listening", resolve);
    server.once("error", reject);
  });
  const a = server.address() as AddressInfo;
  return { server, url: `http://${a.family === "IPv6" ? `[${a.address}]` : a.address}:${a.port}` };
}
