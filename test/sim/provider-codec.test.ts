// The provider stand-in's pure parts: the cty msgpack codec (object-wire-format.md), the planner
// (terraform's plan validity rules), and the bpg-shaped API bodies.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { encode, ExtData } from "@msgpack/msgpack";
import { CodecError, decodeDynamic, decodeMsgpack, encodeMsgpack, fromJson } from "../../sim/provider/codec.js";
import { fillUnknowns, planResourceChange } from "../../sim/provider/plan.js";
import { CONTAINER_SCHEMA, CONTAINER_TYPE } from "../../sim/provider/schema.js";
import { featuresString, netString, parsePropertyString } from "../../sim/provider/container.js";
import { encodeParams } from "../../sim/provider/pve-client.js";
import { isUnknown, UNKNOWN, Unknown, type CtyType, type ObjectValue, type Value } from "../../sim/provider/values.js";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

/** The runner stack's resource config, as terraform decodes cdk.tf.json against the schema. */
function runnerConfig(over: Partial<ObjectValue> = {}): ObjectValue {
  const cfg: ObjectValue = {};
  for (const k of Object.keys((CONTAINER_TYPE as readonly ["object", Record<string, CtyType>])[1])) cfg[k] = null;
  for (const k of Object.keys(CONTAINER_SCHEMA.blocks ?? {})) cfg[k] = [];
  const block = (name: string, values: ObjectValue): ObjectValue => {
    const nb = CONTAINER_SCHEMA.blocks![name];
    const o: ObjectValue = {};
    for (const k of Object.keys(nb.block.attributes)) o[k] = null;
    for (const k of Object.keys(nb.block.blocks ?? {})) o[k] = [];
    return { ...o, ...values };
  };
  return {
    ...cfg,
    node_name: "pve",
    description: "pve-runners ephemeral runner runner-1",
    pool_id: "ci",
    tags: ["pve-runners", "pve-runners-runner-1"],
    unprivileged: true,
    started: true,
    start_on_boot: false,
    clone: [block("clone", { vm_id: 9000, node_name: "pve", full: false })],
    features: [block("features", { nesting: true, keyctl: true })],
    network_interface: [block("network_interface", { name: "eth0", bridge: "vmbr1", vlan_id: 30, firewall: false })],
    initialization: [block("initialization", { hostname: "runner-1" })],
    cpu: [block("cpu", { cores: 2 })],
    memory: [block("memory", { dedicated: 2048, swap: 512 })],
    ...over,
  };
}

describe("msgpack codec", () => {
  const T: CtyType = ["object", { a: "string", n: "number", b: "bool", l: ["list", "string"], m: ["map", "number"], o: ["object", { x: "string" }] }];

  test("objects carry every attribute, null when unset, in the schema's shape", () => {
    const bytes = encodeMsgpack(T, { a: "hi" });
    const plain = encode({ a: "hi", n: null, b: null, l: null, m: null, o: null });
    assert.equal(hex(bytes), hex(plain));
    assert.deepEqual(decodeMsgpack(T, bytes), { a: "hi", n: null, b: null, l: null, m: null, o: null });
  });

  test("an unknown is the fixext1 extension d4 00 00, anywhere in the tree", () => {
    assert.equal(hex(encodeMsgpack("string", UNKNOWN)), "d40000");
    const v = decodeMsgpack(T, encodeMsgpack(T, { a: UNKNOWN, l: ["x", UNKNOWN], o: UNKNOWN }));
    const o = v as ObjectValue;
    assert.ok(isUnknown(o.a));
    assert.ok(isUnknown((o.l as Value[])[1]));
    assert.equal((o.l as Value[])[0], "x");
    assert.ok(isUnknown(o.o));
  });

  test("a refined unknown (ext 12) decodes as unknown and re-encodes byte for byte", () => {
    // refinement map {1: false}: "definitely not null"
    const refined = encode(new ExtData(12, encode(new Map([[1, false]]))));
    const v = decodeMsgpack("string", refined);
    assert.ok(v instanceof Unknown);
    assert.equal(hex(encodeMsgpack("string", v)), hex(refined));
    // Any extension code means unknown.
    assert.ok(isUnknown(decodeMsgpack("number", encode(new ExtData(5, Uint8Array.of(1, 2))))));
  });

  test("numbers: integers as msgpack ints, fractions as float64; big numbers sent as strings decode", () => {
    assert.equal(hex(encodeMsgpack("number", 2)), "02");
    assert.equal(hex(encodeMsgpack("number", 9000)), "cd2328");
    assert.equal(encodeMsgpack("number", 0.5)[0], 0xcb);
    assert.equal(decodeMsgpack("number", encode("1234567890.125")), 1234567890.125);
    assert.equal(decodeMsgpack("number", encode(2n ** 62n, { useBigInt64: true })), 2 ** 62);
  });

  test("the container's nested blocks round-trip", () => {
    const cfg = runnerConfig();
    const back = decodeMsgpack(CONTAINER_TYPE, encodeMsgpack(CONTAINER_TYPE, cfg));
    assert.deepEqual(back, cfg);
    assert.deepEqual(decodeDynamic(CONTAINER_TYPE, { msgpack: encodeMsgpack(CONTAINER_TYPE, null) }), null);
    assert.equal(decodeDynamic(CONTAINER_TYPE, {}), null);
  });

  test("a value that does not fit the type is refused, not silently sent", () => {
    assert.throws(() => encodeMsgpack(T, { a: 1 as unknown as string }), CodecError);
    assert.throws(() => encodeMsgpack(T, { nope: "x" } as ObjectValue), /unexpected attribute "nope"/);
    assert.throws(() => encodeMsgpack(["list", "string"], "x"), /expected a list/);
    assert.throws(() => decodeMsgpack(T, encode({ a: 5 })), /value\.a: expected a string/);
  });

  test("JSON (raw state for UpgradeResourceState): missing attributes become null, dropped ones vanish", () => {
    const v = fromJson(T, { a: "x", n: "7", gone: true, o: { x: "y" } });
    assert.deepEqual(v, { a: "x", n: 7, b: null, l: null, m: null, o: { x: "y" } });
    assert.deepEqual(decodeDynamic(T, { json: Buffer.from(JSON.stringify({ a: "j" })) }), { a: "j", n: null, b: null, l: null, m: null, o: null });
  });
});

describe("planner", () => {
  test("create: config kept, SDKv2 defaults filled, computed unknown, absent blocks stay absent", () => {
    const cfg = runnerConfig();
    const { planned, requiresReplace } = planResourceChange(CONTAINER_SCHEMA, null, cfg, cfg);
    const p = planned as ObjectValue;
    assert.deepEqual(requiresReplace, []);
    assert.equal(p.node_name, "pve");
    assert.equal(p.start_on_boot, false); // configured false beats the default true
    assert.equal(p.template, false);
    assert.equal(p.protection, false);
    assert.equal(p.timeout_clone, 1800);
    assert.equal(p.timeout_delete, 60);
    assert.ok(isUnknown(p.id));
    assert.ok(isUnknown(p.vm_id));
    assert.ok(isUnknown(p.ipv4));
    assert.equal(p.tags instanceof Array && p.tags.length, 2);
    assert.equal(p.environment_variables, null); // optional, no default: stays null
    assert.deepEqual(p.disk, []);
    const clone = (p.clone as ObjectValue[])[0];
    assert.deepEqual({ ...clone }, { vm_id: 9000, node_name: "pve", datastore_id: "", full: false });
    const nic = (p.network_interface as ObjectValue[])[0];
    assert.equal(nic.enabled, true);
    assert.equal(nic.mtu, 0);
    assert.ok(isUnknown(nic.mac_address));
    const cpu = (p.cpu as ObjectValue[])[0];
    assert.equal(cpu.architecture, "amd64");
    assert.ok(isUnknown(cpu.units));
  });

  test("a configured vm_id is planned as given", () => {
    const cfg = runnerConfig({ vm_id: 4242 });
    assert.equal((planResourceChange(CONTAINER_SCHEMA, null, cfg, cfg).planned as ObjectValue).vm_id, 4242);
  });

  test("update with nothing changed plans the prior state exactly", () => {
    const cfg = runnerConfig();
    const created = fillUnknowns(planResourceChange(CONTAINER_SCHEMA, null, cfg, cfg).planned, {
      id: "105",
      vm_id: 105,
      ipv4: {},
      ipv6: {},
      network_interface: [{ mac_address: "BC:24:11:00:00:01" }],
      cpu: [{ units: 0 }],
    }) as ObjectValue;
    const { planned, requiresReplace } = planResourceChange(CONTAINER_SCHEMA, created, cfg, cfg);
    assert.deepEqual(planned, created);
    assert.deepEqual(requiresReplace, []);
  });

  test("any change on update is reported as forcing replacement, with its path", () => {
    const cfg = runnerConfig();
    const prior = fillUnknowns(planResourceChange(CONTAINER_SCHEMA, null, cfg, cfg).planned, { id: "105", vm_id: 105, ipv4: {}, ipv6: {} }) as ObjectValue;
    const changed = runnerConfig({ cpu: [{ ...(cfg.cpu as ObjectValue[])[0], cores: 4 }], pool_id: "other" });
    const { requiresReplace } = planResourceChange(CONTAINER_SCHEMA, prior, changed, changed);
    assert.deepEqual(requiresReplace, [[{ attribute_name: "pool_id" }], [{ attribute_name: "cpu" }, { element_key_int: 0 }, { attribute_name: "cores" }]]);
  });

  test("destroy plans null", () => {
    const cfg = runnerConfig();
    assert.deepEqual(planResourceChange(CONTAINER_SCHEMA, cfg, null, null), { planned: null, requiresReplace: [] });
  });

  test("fillUnknowns fills only what the plan left unknown", () => {
    const planned = { a: "keep", b: UNKNOWN, l: [{ x: UNKNOWN, y: 1 }], c: UNKNOWN };
    assert.deepEqual(fillUnknowns(planned, { a: "changed", b: "filled", l: [{ x: "mac", y: 2 }] }), { a: "keep", b: "filled", l: [{ x: "mac", y: 1 }], c: null });
  });
});

describe("bpg's wire format", () => {
  test("net0 keeps bpg's key order and leaves out what is unset", () => {
    const nic = { name: "eth0", bridge: "vmbr1", firewall: false, vlan_id: 30, mtu: 0, rate_limit: 0, mac_address: "", host_managed: false, enabled: true };
    assert.equal(netString(nic, undefined, undefined, false), "bridge=vmbr1,firewall=0,name=eth0,tag=30");
    assert.equal(
      netString({ ...nic, mac_address: "BC:24:11:AA:BB:CC", mtu: 1450, rate_limit: 12.5 }, { address: "dhcp", gateway: "" }, undefined, true),
      "bridge=vmbr1,firewall=0,host-managed=0,ip=dhcp,hwaddr=BC:24:11:AA:BB:CC,mtu=1450,name=eth0,rate=12.50,tag=30",
    );
  });

  test("features: only the true flags, in bpg's order", () => {
    assert.equal(featuresString({ nesting: true, keyctl: true, fuse: false, mknod: false, mount: null }), "keyctl=1,nesting=1");
    assert.equal(featuresString({ nesting: false, keyctl: false, fuse: false, mknod: false, mount: [] }), "");
    assert.equal(featuresString({ nesting: true, keyctl: false, fuse: true, mknod: true, mount: ["nfs", "cifs"] }), "fuse=1,mount=nfs;cifs,nesting=1,mknod=1");
  });

  test("form bodies: keys sorted like Go's url.Values, lists repeat their key, booleans 1/0", () => {
    assert.equal(
      encodeParams({ swap: 512, delete: ["cpulimit", "net1"], onboot: false, hostname: "runner-1", net0: "bridge=vmbr1,name=eth0", skipped: undefined }),
      "delete=cpulimit&delete=net1&hostname=runner-1&net0=bridge%3Dvmbr1%2Cname%3Deth0&onboot=0&swap=512",
    );
  });

  test("PVE property strings parse, a bare first value under its default key", () => {
    assert.deepEqual(parsePropertyString("name=eth0,bridge=vmbr1,hwaddr=BC:24:11:00:00:01,tag=30"), { name: "eth0", bridge: "vmbr1", hwaddr: "BC:24:11:00:00:01", tag: "30" });
    assert.deepEqual(parsePropertyString("local-lvm:vm-105-disk-0,size=8G", "volume"), { volume: "local-lvm:vm-105-disk-0", size: "8G" });
  });
});
