// The listeners' server limits: a client that never finishes its headers is cut off after the
// header timeout (slowloris), and connections past the cap are closed at once.
import { test } from "node:test";
import assert from "node:assert/strict";
import { connect, type Socket } from "node:net";
import { listenLimited, SERVER_LIMITS } from "../../../listener/http/http-listen.js";
import { slowloris } from "../../fixtures/slowloris.js";

const ok = (_req: unknown, res: { end(s: string): void }) => res.end("hi");

const opened = (url: string): Promise<Socket> => {
  const { hostname, port } = new URL(url);
  const s = connect(Number(port), hostname);
  s.on("error", () => {});
  return new Promise((r) => s.once("connect", () => r(s)));
};

test("a request whose headers never end is answered 408 and closed after the header timeout", async () => {
  const { server, url } = await listenLimited(ok, 0, "127.0.0.1", { headersTimeoutMs: 300, requestTimeoutMs: 1_000 });
  try {
    // Node's defaults (60 s for headers, checked every 30 s) keep this connection open far longer.
    const r = await slowloris(url, 5_000);
    assert.equal(r.closed, true, "connection cut off");
    assert.match(r.answer, /^HTTP\/1\.1 408 /);
    assert.equal(await (await fetch(url)).text(), "hi", "a normal request is served");
  } finally {
    server.close();
    server.closeAllConnections();
  }
});

test("the timeouts bound receiving the request, not the answer: a slow handler (an admin sweep) still answers", async () => {
  const slow = (_req: unknown, res: { end(s: string): void }) => void setTimeout(() => res.end("done"), 1_500);
  const { server, url } = await listenLimited(slow, 0, "127.0.0.1", { headersTimeoutMs: 300, requestTimeoutMs: 1_000 });
  try {
    const res = await fetch(url, { method: "POST", body: "{}" });
    assert.deepEqual([res.status, await res.text()], [200, "done"]);
  } finally {
    server.close();
    server.closeAllConnections();
  }
});

test("connections past the cap are closed at once; the others are served", async () => {
  const { server, url } = await listenLimited(ok, 0, "127.0.0.1", { maxConnections: 2 });
  const held: Socket[] = [];
  try {
    held.push(await opened(url), await opened(url));
    const third = await opened(url);
    const closed = await new Promise<boolean>((r) => {
      const t = setTimeout(() => r(false), 3_000);
      third.once("close", () => (clearTimeout(t), r(true)));
    });
    assert.equal(closed, true, "the third connection is closed");
    held[0].write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    const answer = await new Promise<string>((r) => held[0].once("data", (b) => r(String(b))));
    assert.match(answer, /^HTTP\/1\.1 200 /);
  } finally {
    for (const s of held) s.destroy();
    server.close();
    server.closeAllConnections();
  }
});

test("the defaults are explicit and consistent (Node refuses a header timeout above the request timeout)", async () => {
  const { server, url } = await listenLimited(ok, 0, "127.0.0.1");
  try {
    assert.equal(server.headersTimeout, SERVER_LIMITS.headersTimeoutMs);
    assert.equal(server.requestTimeout, SERVER_LIMITS.requestTimeoutMs);
    assert.equal(server.keepAliveTimeout, SERVER_LIMITS.keepAliveTimeoutMs);
    assert.equal(server.maxConnections, SERVER_LIMITS.maxConnections);
    assert.ok(SERVER_LIMITS.headersTimeoutMs < SERVER_LIMITS.requestTimeoutMs);
    assert.equal(await (await fetch(url)).text(), "hi");
  } finally {
    server.close();
    server.closeAllConnections();
  }
});
