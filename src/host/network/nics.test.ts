import assert from "node:assert/strict";
import { test } from "node:test";
import { sandboxNics, templateNics } from "./index.js";
import type { SandboxNetwork } from "./index.js";

const network = (macs: string[]) => ({ netns: "/run/netns/x", plan: { interfaces: macs.map((mac, index) => ({ name: `eth${index}`, mac, mtu: 1500, kind: "veth" })) } }) as unknown as SandboxNetwork; // only plan.interfaces is read

test("a template has one backend-less NIC per interface, with MACs of its own; none for no network", () => {
  assert.deepEqual(templateNics(0), []);
  assert.deepEqual(templateNics(2), [
    { id: "nic0", mac: "02:6d:6f:61:74:00" },
    { id: "nic1", mac: "02:6d:6f:61:74:01" },
  ]);
});

test("a clone puts each interface's tap behind its template's NIC; a cold VM's NICs have the interfaces' MACs", () => {
  const two = network(["8e:99:67:cb:39:d9", "8e:99:67:cb:39:da"]);
  assert.deepEqual(sandboxNics(two, true), [
    { id: "nic0", mac: "02:6d:6f:61:74:00", tap: "tap0_moat" },
    { id: "nic1", mac: "02:6d:6f:61:74:01", tap: "tap1_moat" },
  ]);
  assert.deepEqual(sandboxNics(two, false), [
    { id: "nic0", mac: "8e:99:67:cb:39:d9", tap: "tap0_moat" },
    { id: "nic1", mac: "8e:99:67:cb:39:da", tap: "tap1_moat" },
  ]);
  assert.deepEqual(sandboxNics(undefined, true), []);
});
