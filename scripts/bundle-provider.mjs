#!/usr/bin/env node
// `npm run build`, after tsc: bundles the terraform provider stand-in (dist/sim/provider/main.js)
// into one CommonJS file, dist/sim/provider/provider.bundle.cjs, which sim/provider/install.ts's
// loader runs with a V8 code cache (CommonJS: vm.Script takes cached data, an ES module does not).
// terraform starts a provider 4-5 times per apply; one file instead of ~100 modules saves a good
// part of each start's CPU. esbuild is already installed (tsx depends on it); without it the shim
// runs main.js and nothing else changes.
import { createRequire } from "node:module";
import { rmSync } from "node:fs";

const entry = "dist/sim/provider/main.js";
const outfile = "dist/sim/provider/provider.bundle.cjs";
rmSync("dist/sim/provider/provider.bundle.mjs", { force: true }); // an earlier build's ES module form
let esbuild;
try {
  esbuild = createRequire(import.meta.url)("esbuild");
} catch {
  rmSync(outfile, { force: true });
  console.log("bundle-provider: esbuild not installed; the provider stand-in runs unbundled");
  process.exit(0);
}
await esbuild.build({
  entryPoints: [entry],
  outfile,
  bundle: true,
  platform: "node",
  format: "cjs",
  target: "node20",
  logLevel: "warning",
  // Half the bytes to read, and to check against the code cache, on every start (~15 ms CPU each).
  minify: true,
  // Off the start path, loaded from dist/ and node_modules when needed: a fresh certificate when
  // install.ts made none (tls.js, with node-forge), grpc-js' channelz (proto-loader).
  external: ["./tls.js", "@grpc/proto-loader"],
  // protos.ts' protoDir() (tests only) reads import.meta.url; the provider never calls it.
  logOverride: { "empty-import-meta": "silent" },
});
