#!/usr/bin/env node
// `npm run build`, after tsc: bundles the terraform provider stand-in (dist/sim/provider/main.js)
// into one file, dist/sim/provider/provider.bundle.mjs, which sim/provider/install.ts's shim runs.
// terraform starts a provider 4-5 times per apply; one file instead of ~100 modules saves a good
// part of each start's CPU. esbuild is already installed (tsx depends on it); without it the shim
// runs main.js and nothing else changes.
import { createRequire } from "node:module";
import { rmSync } from "node:fs";

const entry = "dist/sim/provider/main.js";
const outfile = "dist/sim/provider/provider.bundle.mjs";
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
  format: "esm",
  target: "node20",
  logLevel: "warning",
  // Off the start path, loaded from dist/ and node_modules when needed: a fresh certificate when
  // install.ts made none (tls.js, with node-forge), grpc-js' channelz (proto-loader).
  external: ["./tls.js", "@grpc/proto-loader"],
  // CommonJS dependencies (grpc-js, protobufjs) require node's builtins.
  banner: { js: 'import { createRequire as __bundleRequire } from "node:module"; const require = __bundleRequire(import.meta.url);' },
});
