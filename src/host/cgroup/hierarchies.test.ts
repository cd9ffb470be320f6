import assert from "node:assert/strict";
import { test } from "node:test";
import { parseMountinfo } from "../../shared/mountinfo.js";
import { cgroupHierarchiesIn } from "./hierarchies.js";

const parseCgroupMounts = (mountinfo: string) => cgroupHierarchiesIn(parseMountinfo(mountinfo));

test("a hybrid host's v1 trees and its unified tree, each once, controllers without mount options", () => {
  const mountinfo = [
    "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755",
    "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct",
    "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory",
    "40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,release_agent=/x,name=systemd",
    "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate",
    "90 12 0:32 / /mnt/again\\040there rw - cgroup cgroup rw,memory",
    "91 12 0:50 / /proc rw - proc proc rw",
  ].join("\n");
  assert.deepEqual(parseCgroupMounts(mountinfo), [
    { mountPoint: "/sys/fs/cgroup/cpu,cpuacct", version: 1, controllers: ["cpu", "cpuacct"] },
    { mountPoint: "/sys/fs/cgroup/memory", version: 1, controllers: ["memory"] },
    { mountPoint: "/sys/fs/cgroup/systemd", version: 1, controllers: ["name=systemd"] },
    { mountPoint: "/sys/fs/cgroup/unified", version: 2, controllers: [] },
  ]);
});

test("a v2 host has one tree; a mount point's escapes are undone", () => {
  assert.deepEqual(parseCgroupMounts("29 23 0:26 / /sys/fs/cgroup\\040v2 rw - cgroup2 cgroup2 rw\n"), [{ mountPoint: "/sys/fs/cgroup v2", version: 2, controllers: [] }]);
});
