import assert from "node:assert/strict";
import { test } from "node:test";
import { guestResources } from "./guest-resources.js";

test("Docker's update: what it sends as 0 for 'not set' is dropped, as runc reads it", () => {
  // moby's toContainerdResources for `docker update --cpus 0.5`: its memory limit of 0 would be memory.max = 0 to crun.
  const docker = {
    memory: { limit: 0, reservation: 0, kernel: 0 },
    cpu: { shares: 0, quota: 50000, period: 100000, cpus: "", mems: "" },
    blockIO: { weight: 0 },
    pids: { limit: 0 },
  };
  assert.deepEqual(guestResources(docker), { cpu: { quota: 50000, period: 100000 } });
  assert.deepEqual(docker.memory, { limit: 0, reservation: 0, kernel: 0 }, "the input is not changed");
  // Docker's create: devices and disableOOMKiller stay.
  const create = { devices: [{ allow: false, access: "rwm" }], memory: { disableOOMKiller: false }, cpu: { shares: 0 }, blockIO: { weight: 0 } };
  assert.deepEqual(guestResources(create), { devices: [{ allow: false, access: "rwm" }], memory: { disableOOMKiller: false } });
});

test("a value that asks for something is left for crun to apply or refuse", () => {
  assert.deepEqual(guestResources({ memory: { limit: 1048576, kernel: 1048576 }, blockIO: { weight: 500 } }), { memory: { limit: 1048576, kernel: 1048576 }, blockIO: { weight: 500 } });
  assert.deepEqual(guestResources({ cpu: { quota: -1 }, pids: { limit: -1 } }), { cpu: { quota: -1 }, pids: { limit: -1 } });
  const throttled = { blockIO: { weight: 0, throttleReadBpsDevice: [{ major: 8, minor: 0, rate: 1 }] } };
  assert.deepEqual(guestResources(throttled), { blockIO: { throttleReadBpsDevice: [{ major: 8, minor: 0, rate: 1 }] } });
});
