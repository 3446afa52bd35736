// Which label set serves a job, and which sets overlap (GitHub may cross them).
import { test } from "node:test";
import assert from "node:assert/strict";
import { matchLabelSet, overlappingLabelSets } from "../../../listener/lifecycle/labels.js";

const sets = [
  { name: "small", labels: ["self-hosted", "linux", "x64"] },
  { name: "docker", labels: ["self-hosted", "linux", "x64", "docker"] },
  { name: "arm", labels: ["self-hosted", "linux", "ARM64"] },
];

test("the smallest set whose labels include all of the job's serves it, case-insensitively", () => {
  assert.equal(matchLabelSet(["self-hosted", "Linux"], sets)?.name, "small");
  assert.equal(matchLabelSet(["docker"], sets)?.name, "docker");
  assert.equal(matchLabelSet(["arm64"], sets)?.name, "arm");
  assert.equal(matchLabelSet(["ubuntu-latest"], sets), undefined);
  assert.equal(matchLabelSet([], sets), undefined, "a job with no labels is not ours");
});

test("overlapping sets are reported: the larger set's runners can take the smaller set's jobs", () => {
  assert.deepEqual(overlappingLabelSets(sets), [{ small: "small", large: "docker" }]);
  assert.deepEqual(overlappingLabelSets([sets[0], sets[2]]), []);
});
