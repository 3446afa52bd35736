#!/usr/bin/env node
// Regenerates sim/provider/plugin-descriptors.ts from the .proto files next to this script:
//   node sim/provider/proto/generate-descriptors.mjs
// The provider stand-in loads these precompiled descriptors instead of parsing .proto text at
// every start (terraform starts a provider 4-5 times per apply). test/sim/provider-protos.test.ts
// fails when the .proto files and the generated module disagree.
import { writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { descriptorSource } from "./descriptors.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "plugin-descriptors.ts");
writeFileSync(out, descriptorSource(here));
console.log(`wrote ${out}`);
