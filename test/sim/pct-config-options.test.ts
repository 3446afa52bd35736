// `pct config`'s command line, parsed as real pct parses it (PVE::JSONSchema::get_options over
// vm_config's schema): the stand-in pct and the recording pct of the helper's tests share it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { parseConfigArgs } from "../../sim/pct/config-options.js";

test("--current: a boolean whose value is optional, with either prefix", () => {
  assert.deepEqual(parseConfigArgs(["201"]), { vmid: "201", current: false, snapshot: undefined });
  for (const a of [["201", "--current"], ["201", "-current"], ["201", "--current", "1"], ["201", "--current=yes"], ["--current", "", "201"]])
    assert.deepEqual(parseConfigArgs(a), { vmid: "201", current: true, snapshot: undefined }, a.join(" "));
  assert.deepEqual(parseConfigArgs(["201", "--current", "0"]), { vmid: "201", current: false, snapshot: undefined });
  assert.deepEqual(parseConfigArgs(["--current", "201"]), { error: "400 Parameter verification failed.\ncurrent: unable to parse boolean option" }, "the vmid after --current is its value");
});

test("unknown options, missing or extra arguments and snapshot with current are refused", () => {
  assert.deepEqual(parseConfigArgs(["201", "--bogus"]), { error: "Unknown option: bogus\n400 unable to parse option" });
  assert.deepEqual(parseConfigArgs(["201", "--pending"]), { error: "Unknown option: pending\n400 unable to parse option" });
  assert.deepEqual(parseConfigArgs([]), { error: "400 not enough arguments" });
  assert.deepEqual(parseConfigArgs(["201", "202"]), { error: "400 too many arguments" });
  assert.match((parseConfigArgs(["201", "--snapshot", "s1", "--current"]) as { error: string }).error, /cannot use 'snapshot' parameter with 'current'/);
  assert.deepEqual(parseConfigArgs(["201", "--snapshot"]), { error: "Option snapshot requires an argument\n400 unable to parse option" });
});
