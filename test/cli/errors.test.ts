// How the CLI ends on an error (cli/errors.ts): one line for a person's mistake, one line and a
// pointer to --debug for an internal error, the stack only with --debug.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { CommanderError, InvalidArgumentError } from "commander";
import { UserError, describeCliError } from "../../cli/errors.js";

describe("describeCliError", () => {
  test("a user error: its message on one line, its exit code", () => {
    assert.deepEqual(describeCliError(new UserError("no label set named 'x'"), false), { text: "pve-runners: no label set named 'x'\n", exitCode: 2 });
    assert.deepEqual(describeCliError(new UserError("busy", 1), true), { text: "pve-runners: busy\n", exitCode: 1 });
    assert.deepEqual(describeCliError(new InvalidArgumentError("must be a positive integer"), false), { text: "pve-runners: must be a positive integer\n", exitCode: 2 });
  });

  test("commander has printed its own line: nothing more, its exit code (0 for --help)", () => {
    assert.deepEqual(describeCliError(new CommanderError(0, "commander.helpDisplayed", "(outputHelp)"), false), { text: "", exitCode: 0 });
    assert.deepEqual(describeCliError(new CommanderError(1, "commander.unknownOption", "error: unknown option"), false), { text: "", exitCode: 1 });
  });

  test("a port another process holds: which one, and the likely reason", () => {
    const err = Object.assign(new Error("listen EADDRINUSE: address already in use 127.0.0.1:8790"), { code: "EADDRINUSE", address: "127.0.0.1", port: 8790 });
    assert.deepEqual(describeCliError(err, false), { text: "pve-runners: 127.0.0.1:8790 is in use (is pve-runners already running?)\n", exitCode: 1 });
  });

  test("an internal error: one line and --debug; with --debug the stack", () => {
    const err = new TypeError("cannot read properties of undefined (reading 'x')\nsecond line");
    const plain = describeCliError(err, false);
    assert.equal(plain.text, "pve-runners: internal error: cannot read properties of undefined (reading 'x') (run with --debug for details)\n");
    assert.equal(plain.exitCode, 70);
    const debug = describeCliError(err, true);
    assert.match(debug.text, /^pve-runners: internal error: TypeError: cannot read/);
    assert.match(debug.text, /\n\s+at /, "the stack");
  });
});
