import assert from "node:assert/strict";
import { test } from "node:test";
import { cgroupDirsIn, cpuLimitWrites, hostCpuLimits } from "./sandbox-cgroup.js";

const v1 = (file: string) => ["cpu.cfs_quota_us", "cpu.cfs_period_us", "cpu.shares", "cgroup.procs"].includes(file);
const v1Cpuset = (file: string) => ["cpuset.cpus", "cpuset.mems"].includes(file);
const v2 = (file: string) => ["cpu.max", "cpu.weight", "cpuset.cpus", "cpuset.mems"].includes(file);

test("only the CPU limits of an OCI LinuxResources are taken; memory, pids and bad values are not", () => {
  assert.deepEqual(hostCpuLimits({ cpu: { quota: 50000, period: 100000, shares: 512, cpus: "0-1", mems: "0" }, memory: { limit: 1 }, pids: { limit: 5 } }), { quota: 50000, period: 100000, shares: 512, cpus: "0-1", mems: "0" });
  assert.deepEqual(hostCpuLimits({ memory: { limit: 1 } }), {});
  assert.deepEqual(hostCpuLimits({ cpu: { quota: "50000", period: 0, shares: -1, cpus: "" } }), {});
  assert.deepEqual(hostCpuLimits({ cpu: null }), {});
});

test("v1: period before quota, no quota as -1, shares as they are; cpuset where the tree has it", () => {
  assert.deepEqual(cpuLimitWrites({ quota: 50000, period: 100000, shares: 512 }, v1), [
    { file: "cpu.cfs_period_us", value: "100000" },
    { file: "cpu.cfs_quota_us", value: "50000" },
    { file: "cpu.shares", value: "512" },
  ]);
  assert.deepEqual(cpuLimitWrites({ quota: -1 }, v1), [{ file: "cpu.cfs_quota_us", value: "-1" }]);
  assert.deepEqual(cpuLimitWrites({ quota: 50000, cpus: "1", mems: "0" }, v1Cpuset), [{ file: "cpuset.cpus", value: "1" }, { file: "cpuset.mems", value: "0" }], "a cpuset tree takes only its own files");
});

test("v2: cpu.max as QUOTA PERIOD (max: none; a period alone is not written), shares as runc maps them onto weight", () => {
  assert.deepEqual(cpuLimitWrites({ quota: 50000, period: 100000, shares: 1024 }, v2), [
    { file: "cpu.max", value: "50000 100000" },
    { file: "cpu.weight", value: "39" },
  ]);
  assert.deepEqual(cpuLimitWrites({ quota: 0 }, v2), [{ file: "cpu.max", value: "max" }]);
  assert.deepEqual(cpuLimitWrites({ period: 100000 }, v2), []);
  assert.deepEqual(cpuLimitWrites({ shares: 2 }, v2), [{ file: "cpu.weight", value: "1" }]);
  assert.deepEqual(cpuLimitWrites({ shares: 262144 }, v2), [{ file: "cpu.weight", value: "10000" }]);
  assert.deepEqual(cpuLimitWrites({ quota: 1 }, () => false), [], "no controller, nothing to write");
});

test("/proc/PID/cgroup lines become directories under the matching hierarchies' mount points", () => {
  const hierarchies = [
    { mountPoint: "/sys/fs/cgroup/cpu,cpuacct", version: 1 as const, controllers: ["cpu", "cpuacct"] },
    { mountPoint: "/sys/fs/cgroup/systemd", version: 1 as const, controllers: ["name=systemd"] },
    { mountPoint: "/sys/fs/cgroup/unified", version: 2 as const, controllers: [] },
  ];
  const membership = ["4:cpuacct,cpu:/moat-test/t1", "1:name=systemd:/moat-test/t1", "0::/moat-test/t1", "9:pids:/elsewhere", "garbage", ""].join("\n");
  assert.deepEqual(cgroupDirsIn(membership, hierarchies), ["/sys/fs/cgroup/cpu,cpuacct/moat-test/t1", "/sys/fs/cgroup/systemd/moat-test/t1", "/sys/fs/cgroup/unified/moat-test/t1"]);
});
