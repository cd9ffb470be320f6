import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { MoatError } from "../../../shared/errors.js";
import { checkConflist, loadNetwork } from "./conflist.js";

// The conflist docs/networking.md shows (bridge + host-local + portmap + firewall).
const bridgeList = {
  cniVersion: "1.0.0",
  name: "moat",
  plugins: [
    { type: "bridge", bridge: "moat0", isGateway: true, ipMasq: true, mtu: 1400, ipam: { type: "host-local", ranges: [[{ subnet: "198.18.10.0/24" }]], routes: [{ dst: "0.0.0.0/0" }] } },
    { type: "portmap", capabilities: { portMappings: true } },
    { type: "firewall" },
  ],
};

function refusal(value: unknown, message: RegExp) {
  assert.throws(() => checkConflist(value, "/etc/cni/net.d/10-moat.conflist"), (error: unknown) => error instanceof MoatError && error.code === "MOAT_CNI_CONFIG" && message.test(error.message));
}

test("a conflist is checked and kept whole, plugin by plugin", () => {
  const list = checkConflist(bridgeList, "f");
  assert.equal(list.name, "moat");
  assert.equal(list.cniVersion, "1.0.0");
  assert.equal(list.disableCheck, false);
  assert.deepEqual(list.plugins.map((plugin) => plugin.type), ["bridge", "portmap", "firewall"]);
  assert.deepEqual(list.plugins[1]?.capabilities, { portMappings: true });
  assert.equal(list.plugins[0]?.raw, bridgeList.plugins[0], "the plugin's own keys go to it unchanged");
});

test("a single plugin's .conf becomes a list of one, as libcni makes it", () => {
  const list = checkConflist({ cniVersion: "0.4.0", name: "one", type: "bridge", bridge: "b0" }, "f");
  assert.deepEqual(list.plugins.map((plugin) => plugin.type), ["bridge"]);
  assert.equal(list.plugins[0]?.raw.bridge, "b0");
});

test("each bad field is refused naming the file and the field", () => {
  refusal([], /^\/etc\/cni\/net\.d\/10-moat\.conflist: \(top level\): must be a JSON object/);
  refusal({ ...bridgeList, cniVersion: undefined }, /: cniVersion: must be a string/);
  refusal({ ...bridgeList, cniVersion: "0.2.0" }, /: cniVersion: "0\.2\.0" is not supported \(supported: 0\.3\.0, 0\.3\.1, 0\.4\.0, 1\.0\.0\)/);
  refusal({ ...bridgeList, name: "../x" }, /: name: must be a string/);
  refusal({ ...bridgeList, plugins: [] }, /: plugins: must be a non-empty array/);
  refusal({ ...bridgeList, plugins: {} }, /: plugins: must be a non-empty array/);
  refusal({ ...bridgeList, plugins: [7] }, /: plugins\[0\]: must be a JSON object/);
  refusal({ ...bridgeList, plugins: [{ type: "../../bin/sh" }] }, /: plugins\[0\]\.type: must be a plugin's file name/);
  refusal({ ...bridgeList, plugins: [{}] }, /: plugins\[0\]\.type:/);
  refusal({ ...bridgeList, plugins: [{ type: "portmap", capabilities: { portMappings: "yes" } }] }, /: plugins\[0\]\.capabilities\.portMappings: must be a boolean/);
  refusal({ ...bridgeList, plugins: [{ type: "bridge", ipam: { type: 3 } }] }, /: plugins\[0\]\.ipam\.type: must be an IPAM plugin's file name/);
  refusal({ ...bridgeList, disableCheck: "no" }, /: disableCheck: must be a boolean/);
});

test("a network is found by name in its conf dir, first file in lexical order, bad JSON skipped", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), "moat-cni-conf-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, "05-broken.conflist"), "{ not json");
  await writeFile(join(dir, "10-moat.conflist"), JSON.stringify(bridgeList));
  await writeFile(join(dir, "20-moat-too.conflist"), JSON.stringify({ ...bridgeList, plugins: [{ type: "ptp" }] }));
  await writeFile(join(dir, "30-other.conf"), JSON.stringify({ cniVersion: "0.4.0", name: "other", type: "macvlan" }));
  await writeFile(join(dir, "40-ignored.txt"), JSON.stringify({ ...bridgeList, name: "ignored" }));
  const found = await loadNetwork(dir, "moat");
  assert.equal(found.file, join(dir, "10-moat.conflist"));
  assert.equal(found.conflist.plugins.length, 3);
  assert.equal((await loadNetwork(dir, "other")).conflist.plugins[0]?.type, "macvlan");
  await assert.rejects(loadNetwork(dir, "ignored"), (error: unknown) => error instanceof MoatError && error.code === "MOAT_CNI_NOT_FOUND" && error.message.includes("05-broken.conflist") && error.message.startsWith('CNI network "ignored": no .conf'));
  await assert.rejects(loadNetwork(join(dir, "nope"), "moat"), (error: unknown) => error instanceof MoatError && error.code === "MOAT_CNI_NOT_FOUND" && /conf dir .*nope cannot be read \(ENOENT\)/.test(error.message));
  await writeFile(join(dir, "01-bad.conflist"), JSON.stringify({ ...bridgeList, name: "bad", plugins: [{ type: "bridge", capabilities: [] }] }));
  await assert.rejects(loadNetwork(dir, "bad"), (error: unknown) => error instanceof MoatError && error.message === `${join(dir, "01-bad.conflist")}: plugins[0].capabilities: must be an object of booleans`);
});
