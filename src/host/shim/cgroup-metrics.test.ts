import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { cgroupsV2 } from "../../shared/protocol/index.js";
import { metricsFromCgroupFiles } from "./cgroup-metrics.js";

test("cgroup v2 files become containerd's Metrics", () => {
  const metrics = create(
    cgroupsV2.MetricsSchema,
    metricsFromCgroupFiles({
      "cpu.stat": "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 0\n",
      "memory.current": "4096\n",
      "memory.max": "max\n",
      "memory.stat": "anon 1024\nfile 2048\npgfault 7\nunknown_key 9\n",
      "pids.current": "2\n",
      "pids.max": "100\n",
      "io.stat": "254:0 rbytes=4096 wbytes=512 rios=1 wios=2 dbytes=0 dios=0\n",
    }),
  );
  assert.equal(metrics.cpu?.usageUsec, 1500n);
  assert.equal(metrics.cpu?.systemUsec, 500n);
  assert.equal(metrics.memory?.usage, 4096n);
  assert.equal(metrics.memory?.usageLimit, 0n, "max is no limit");
  assert.equal(metrics.memory?.anon, 1024n);
  assert.equal(metrics.memory?.pgfault, 7n);
  assert.equal(metrics.pids?.current, 2n);
  assert.equal(metrics.pids?.limit, 100n);
  assert.deepEqual(
    metrics.io?.usage.map(({ major, minor, rbytes, wbytes, rios, wios }) => ({ major, minor, rbytes, wbytes, rios, wios })),
    [{ major: 254n, minor: 0n, rbytes: 4096n, wbytes: 512n, rios: 1n, wios: 2n }],
  );
});

test("garbage from the guest is skipped, never thrown", () => {
  for (let round = 0; round < 200; round++) {
    const junk = () => randomBytes(64).toString("latin1");
    const files = Object.fromEntries(["cpu.stat", "memory.current", "memory.max", "memory.stat", "pids.current", "io.stat"].map((name) => [name, junk()]));
    create(cgroupsV2.MetricsSchema, metricsFromCgroupFiles(files));
  }
  assert.equal(metricsFromCgroupFiles({ "memory.current": "99999999999999999999999\n" }).memory?.usage, undefined, "beyond uint64");
});
