import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { MoatError } from "../../shared/errors.js";
import { defaultSpec } from "./default-spec.js";
import { checkProcessDocument, checkSpec } from "./spec-check.js";

const FILE = "b/config.json";

/** moat's default spec (runc spec's defaults) changed by `change`: crun's tests change one field of a base config the same way. */
function spec(change: (spec: Record<string, any>) => void = () => undefined): Record<string, any> {
  const base = structuredClone(defaultSpec({ args: ["sh"], env: ["PATH=/bin"], cwd: "/", hostname: "h" })) as Record<string, any>; // a test edits fields freely
  change(base);
  return base;
}

function refused(change: (spec: Record<string, any>) => void, message: string): void {
  assert.throws(
    () => checkSpec(spec(change), FILE),
    (error: unknown) => {
      assert.ok(error instanceof MoatError, `not a MoatError: ${String(error)}`);
      assert.equal(error.code, "MOAT_BUNDLE_INVALID");
      assert.ok(error.message.startsWith(`${FILE}: `), error.message);
      assert.ok(error.message.includes(message), `"${error.message}" does not include "${message}"`);
      assert.ok(!error.message.includes("\n"), "one line");
      return true;
    },
  );
}

/** A spec that uses every section of config.md and config-linux.md, correctly. */
function fullSpec(): Record<string, any> {
  return spec((s) => {
    s.ociVersion = "1.1.0-rc.1+build.5";
    s.process.terminal = true;
    s.process.consoleSize = { height: 25, width: 80 };
    s.process.user = { uid: 1000, gid: 1000, umask: 0o22, additionalGids: [5, 6] };
    s.process.rlimits = [{ type: "RLIMIT_NOFILE", soft: 1024, hard: 4096 }, { type: "RLIMIT_CORE", soft: 18446744073709551615, hard: 18446744073709551615 }];
    s.process.oomScoreAdj = -1000;
    s.process.scheduler = { policy: "SCHED_BATCH", nice: 5, flags: ["SCHED_FLAG_RESET_ON_FORK"] };
    s.process.ioPriority = { class: "IOPRIO_CLASS_BE", priority: 7 };
    s.domainname = "example.test";
    s.mounts.push({ destination: "/data", type: "none", source: "/tmp", options: ["rbind", "ro"], uidMappings: [{ containerID: 0, hostID: 1000, size: 1 }] });
    s.hooks = { createRuntime: [{ path: "/bin/true", args: ["true"], env: ["A=1"], timeout: 5 }] };
    s.annotations = { "com.example.key": "" };
    s.linux.namespaces.push({ type: "user" }, { type: "time" });
    s.linux.uidMappings = [{ containerID: 0, hostID: 100000, size: 65536 }];
    s.linux.gidMappings = [{ containerID: 0, hostID: 100000, size: 65536 }];
    s.linux.timeOffsets = { monotonic: { secs: -10, nanosecs: 5 } };
    s.linux.devices = [{ type: "c", path: "/dev/fuse", major: 10, minor: 229, fileMode: 0o666, uid: 0, gid: 0 }, { type: "p", path: "/dev/fifo" }];
    s.linux.cgroupsPath = "system.slice:moat:c1";
    s.linux.resources = {
      devices: [{ allow: false, access: "rwm" }, { allow: true, type: "c", major: 1, minor: -1, access: "rw" }],
      memory: { limit: 536870912, reservation: -1, swap: 1073741824, swappiness: 60, disableOOMKiller: false },
      cpu: { shares: 1024, quota: 200000, period: 100000, burst: 1000, cpus: "0-1,3", mems: "0", idle: 0 },
      pids: { limit: 100 },
      blockIO: { weight: 500, weightDevice: [{ major: 8, minor: 0, leafWeight: 10 }], throttleReadBpsDevice: [{ major: 8, minor: 0, rate: 1000 }] },
      hugepageLimits: [{ pageSize: "2MB", limit: 0 }],
      network: { classID: 1, priorities: [{ name: "eth0", priority: 5 }] },
      rdma: { mlx5_1: { hcaHandles: 3 } },
      unified: { "memory.high": "max", "hugetlb.2MB.max": "0" },
    };
    s.linux.sysctl = { "net.ipv4.ip_forward": "1", "kernel.shmmax": "1", "fs.mqueue.msg_max": "10" };
    s.linux.seccomp = {
      defaultAction: "SCMP_ACT_ERRNO",
      defaultErrnoRet: 1,
      architectures: ["SCMP_ARCH_X86_64"],
      flags: ["SECCOMP_FILTER_FLAG_LOG"],
      syscalls: [{ names: ["read", "write"], action: "SCMP_ACT_ALLOW", args: [{ index: 0, value: 1, op: "SCMP_CMP_EQ" }] }],
    };
    s.linux.rootfsPropagation = "rslave";
    s.linux.personality = { domain: "LINUX32" };
    s.linux.intelRdt = { closID: "guaranteed", memBwSchema: "MB:0=20" };
    s.linux.somethingNewer = { any: "thing" }; // unknown properties are allowed (config.md, "Extensibility")
    s.vm = { hypervisor: { path: "/x" } };
  });
}

test("the default spec, and a spec using every section correctly, pass", () => {
  checkSpec(spec(), FILE);
  checkSpec(fullSpec(), FILE);
});

// Each rule, one case (or more) each: the field named, and why.
const CASES: Array<[string, (s: Record<string, any>) => void, string]> = [
  ["ociVersion missing", (s) => delete s.ociVersion, "ociVersion: is required"],
  ["ociVersion not a string", (s) => (s.ociVersion = 1), "ociVersion: must be a string, got 1"],
  ["ociVersion not SemVer", (s) => (s.ociVersion = "1.0"), 'ociVersion: must be a SemVer 2.0.0 version such as "1.0.2", got "1.0"'],
  ["ociVersion with a leading zero", (s) => (s.ociVersion = "1.01.0"), "ociVersion: must be a SemVer"],
  ["ociVersion of another major", (s) => (s.ociVersion = "2.0.0"), "ociVersion: must be a version 1.x"],
  ["root missing", (s) => delete s.root, "root: is required"],
  ["root.path empty", (s) => (s.root.path = ""), "root.path: must be a non-empty path"],
  ["root.readonly not a bool", (s) => (s.root.readonly = "yes"), 'root.readonly: must be true or false, got "yes"'],
  ["mounts not an array", (s) => (s.mounts = {}), "mounts: must be an array, got an object"],
  ["mount destination missing", (s) => delete s.mounts[1].destination, "mounts[1].destination: is required"],
  ["mount destination relative", (s) => (s.mounts[1].destination = "dev"), 'mounts[1].destination: must be an absolute path, got "dev"'],
  ["mount option empty", (s) => s.mounts[1].options.push(""), "mounts[1].options[4]: must be a non-empty mount option"],
  ["mount options not strings", (s) => (s.mounts[1].options = [1]), "mounts[1].options[0]: must be a string, got 1"],
  ["mount idmapping of size 0", (s) => (s.mounts[1].uidMappings = [{ containerID: 0, hostID: 0, size: 0 }]), "mounts[1].uidMappings[0].size: must be an integer from 1 to"],
  ["process missing", (s) => delete s.process, "process: is required"],
  ["process.args empty", (s) => (s.process.args = []), "process.args: must be a non-empty array of strings"],
  ["process.args not strings", (s) => (s.process.args = ["sh", 3]), "process.args: must be a non-empty array of strings"],
  ["process.args with an empty program", (s) => (s.process.args = [""]), "process.args: the first entry (the program) must not be empty"],
  ["process.args with NUL", (s) => (s.process.args = ["sh", "a\0b"]), "process.args[1]: must not contain a NUL byte"],
  ["process.cwd missing", (s) => delete s.process.cwd, "process.cwd: is required"],
  ["process.cwd relative", (s) => (s.process.cwd = "tmp"), 'process.cwd: must be an absolute path, got "tmp"'],
  ["process.env not an array", (s) => (s.process.env = "PATH=/bin"), 'process.env: must be an array, got "PATH=/bin"'],
  ["process.env entry without =", (s) => s.process.env.push("JUSTNAME"), 'process.env[1]: must be NAME=VALUE, got "JUSTNAME"'],
  ["process.env entry with an empty name", (s) => s.process.env.push("=x"), "process.env[1]: must be NAME=VALUE"],
  ["process.terminal not a bool", (s) => (s.process.terminal = 1), "process.terminal: must be true or false, got 1"],
  ["consoleSize with a terminal, negative", (s) => ((s.process.terminal = true), (s.process.consoleSize = { height: -1, width: 80 })), "process.consoleSize.height: must be a uint32 from 0 to 4294967295, got -1"],
  ["consoleSize with a terminal, width missing", (s) => ((s.process.terminal = true), (s.process.consoleSize = { height: 1 })), "process.consoleSize.width: is required"],
  ["rlimit of an unknown type", (s) => (s.process.rlimits[0].type = "RLIMIT_FOO"), "process.rlimits[0].type: must be one of the resources of getrlimit(2) (RLIMIT_AS"],
  ["rlimit twice", (s) => s.process.rlimits.push({ type: "RLIMIT_NOFILE", soft: 1, hard: 1 }), "process.rlimits[1].type: RLIMIT_NOFILE is set twice"],
  ["rlimit soft above hard", (s) => (s.process.rlimits[0].soft = 2048), "process.rlimits[0].soft: must not be above hard (1024), got 2048"],
  ["rlimit negative", (s) => (s.process.rlimits[0].hard = -1), "process.rlimits[0].hard: must be a uint64 from 0 to 18446744073709551615, got -1"],
  ["rlimit fractional", (s) => (s.process.rlimits[0].hard = 1.5), "process.rlimits[0].hard: must be a uint64"],
  ["rlimit hard missing", (s) => delete s.process.rlimits[0].hard, "process.rlimits[0].hard: is required"],
  ["user.uid negative", (s) => (s.process.user.uid = -1), "process.user.uid: must be a uint32 from 0 to 4294967295, got -1"],
  ["user.gid missing", (s) => delete s.process.user.gid, "process.user.gid: is required"],
  ["user.uid past uint32", (s) => (s.process.user.uid = 2 ** 32), "process.user.uid: must be a uint32"],
  ["user.umask out of range", (s) => (s.process.user.umask = 0o10000), "process.user.umask: must be an integer from 0 to 4095"],
  ["additionalGids not ints", (s) => (s.process.user.additionalGids = ["wheel"]), 'process.user.additionalGids[0]: must be a uint32 from 0 to 4294967295, got "wheel"'],
  ["capability set not an array", (s) => (s.process.capabilities.bounding = "CAP_KILL"), 'process.capabilities.bounding: must be an array, got "CAP_KILL"'],
  ["capability not a string", (s) => (s.process.capabilities.ambient = [7]), "process.capabilities.ambient[0]: must be a string, got 7"],
  ["noNewPrivileges not a bool", (s) => (s.process.noNewPrivileges = "true"), "process.noNewPrivileges: must be true or false"],
  ["oomScoreAdj out of range", (s) => (s.process.oomScoreAdj = 1001), "process.oomScoreAdj: must be an integer from -1000 to 1000, got 1001"],
  ["scheduler policy unknown", (s) => (s.process.scheduler = { policy: "SCHED_FAST" }), "process.scheduler.policy: must be one of SCHED_OTHER"],
  ["scheduler flag unknown", (s) => (s.process.scheduler = { policy: "SCHED_OTHER", flags: ["X"] }), "process.scheduler.flags[0]: must be one of"],
  ["ioPriority out of range", (s) => (s.process.ioPriority = { class: "IOPRIO_CLASS_RT", priority: 8 }), "process.ioPriority.priority: must be an integer from 0 to 7, got 8"],
  ["hostname not a string", (s) => (s.hostname = 5), "hostname: must be a string, got 5"],
  ["hostname too long", (s) => (s.hostname = "h".repeat(65)), "hostname: must be at most 64 bytes, got 65"],
  ["hostname without a UTS namespace", (s) => (s.linux.namespaces = s.linux.namespaces.filter((n: { type: string }) => n.type !== "uts")), "hostname: needs a UTS namespace of the container's own"],
  ["domainname without a UTS namespace", (s) => ((s.hostname = ""), (s.domainname = "d"), (s.linux.namespaces = [])), "domainname: needs a UTS namespace"],
  ["hook path relative", (s) => (s.hooks = { poststop: [{ path: "cleanup.sh" }] }), 'hooks.poststop[0].path: must be an absolute path, got "cleanup.sh"'],
  ["hook timeout zero", (s) => (s.hooks = { prestart: [{ path: "/x", timeout: 0 }] }), "hooks.prestart[0].timeout: must be an integer from 1 to"],
  ["hook env malformed", (s) => (s.hooks = { createContainer: [{ path: "/x", env: ["X"] }] }), "hooks.createContainer[0].env[0]: must be NAME=VALUE"],
  ["annotation value not a string", (s) => (s.annotations = { a: 1 }), 'annotations["a"]: must be a string, got 1'],
  ["annotation key empty", (s) => (s.annotations = { "": "x" }), "annotations: keys must not be empty"],
  ["linux not an object", (s) => (s.linux = []), "linux: must be an object, got an array"],
  ["namespace type unknown", (s) => s.linux.namespaces.push({ type: "net" }), "linux.namespaces[6].type: must be one of pid, network, mount, ipc, uts, user, cgroup, time, got \"net\""],
  ["namespace twice", (s) => s.linux.namespaces.push({ type: "pid" }), 'linux.namespaces[6].type: "pid" is listed twice'],
  ["namespace path relative", (s) => (s.linux.namespaces[1].path = "run/netns/x"), "linux.namespaces[1].path: must be an absolute path"],
  ["uid mappings without a user namespace", (s) => (s.linux.uidMappings = [{ containerID: 0, hostID: 1, size: 1 }]), "linux.uidMappings: needs a user namespace"],
  ["a new user namespace without mappings", (s) => s.linux.namespaces.push({ type: "user" }), "linux.uidMappings: must map at least one id"],
  ["id mapping past the last id", (s) => (s.linux.namespaces.push({ type: "user" }), (s.linux.uidMappings = [{ containerID: 4294967295, hostID: 0, size: 2 }]), (s.linux.gidMappings = [{ containerID: 0, hostID: 0, size: 1 }])), "linux.uidMappings[0].size: the range runs past id 4294967295"],
  ["time offsets without a time namespace", (s) => (s.linux.timeOffsets = { boottime: { secs: 1 } }), "linux.timeOffsets: needs a time namespace"],
  ["time offset of an unknown clock", (s) => (s.linux.timeOffsets = { realtime: { secs: 1 } }), 'linux.timeOffsets["realtime"]: is not a clock a time namespace offsets'],
  ["device type unknown", (s) => (s.linux.devices = [{ type: "x", path: "/dev/x" }]), "linux.devices[0].type: must be one of c, b, u, p"],
  ["device without major", (s) => (s.linux.devices = [{ type: "c", path: "/dev/x", minor: 1 }]), 'linux.devices[0].major: is required for a device of type "c"'],
  ["device path relative", (s) => (s.linux.devices = [{ type: "p", path: "fifo" }]), "linux.devices[0].path: must be an absolute path"],
  ["device minor negative", (s) => (s.linux.devices = [{ type: "b", path: "/dev/b", major: 8, minor: -1 }]), "linux.devices[0].minor: must be an integer from 0 to"],
  ["cgroupsPath not a string", (s) => (s.linux.cgroupsPath = 1), "linux.cgroupsPath: must be a string, got 1"],
  ["cgroupsPath with ..", (s) => (s.linux.cgroupsPath = "/a/../b"), 'linux.cgroupsPath "/a/../b": it must not contain . or .. components'],
  ["cgroupsPath a systemd slice", (s) => (s.linux.cgroupsPath = "system.slice:moat:x.slice"), "a container's cgroup must be a scope"],
  ["allowed device without allow", (s) => (s.linux.resources.devices = [{ access: "r" }]), "linux.resources.devices[0].allow: is required"],
  ["allowed device access unknown", (s) => (s.linux.resources.devices[0].access = "rwx"), 'linux.resources.devices[0].access: must be made of r, w and m, each at most once, got "rwx"'],
  ["allowed device access repeated", (s) => (s.linux.resources.devices[0].access = "rr"), "linux.resources.devices[0].access: must be made of r, w and m"],
  ["allowed device type unknown", (s) => (s.linux.resources.devices[0].type = "p"), "linux.resources.devices[0].type: must be one of a, c, b"],
  ["memory limit below -1", (s) => (s.linux.resources.memory = { limit: -2 }), "linux.resources.memory.limit: must be an integer from -1 to"],
  ["memory limit a string", (s) => (s.linux.resources.memory = { limit: "2g" }), 'linux.resources.memory.limit: must be an integer from -1 to 9223372036854775807, got "2g"'],
  ["memory swap below the limit", (s) => (s.linux.resources.memory = { limit: 200, swap: 100 }), "linux.resources.memory.swap: is memory + swap, so it must be at least limit (200), got 100"],
  ["memory swappiness above 100", (s) => (s.linux.resources.memory = { swappiness: 101 }), "linux.resources.memory.swappiness: must be an integer from 0 to 100"],
  ["cpu quota below 1 ms", (s) => (s.linux.resources.cpu = { quota: 999 }), "linux.resources.cpu.quota: must be -1 (no limit) or at least 1000 µs, got 999"],
  ["cpu period above 1 s", (s) => (s.linux.resources.cpu = { period: 1000001 }), "linux.resources.cpu.period: must be from 1000 to 1000000 µs"],
  ["cpu burst above quota", (s) => (s.linux.resources.cpu = { quota: 5000, burst: 6000 }), "linux.resources.cpu.burst: must be no larger than quota (5000), got 6000"],
  ["cpu cpus malformed", (s) => (s.linux.resources.cpu = { cpus: "0-" }), 'linux.resources.cpu.cpus: must be a list such as "0-3,5"'],
  ["cpu cpus reversed range", (s) => (s.linux.resources.cpu = { cpus: "3-1" }), "linux.resources.cpu.cpus: must be a list"],
  ["cpu mems not a string", (s) => (s.linux.resources.cpu = { mems: 0 }), "linux.resources.cpu.mems: must be a string, got 0"],
  ["cpu idle not 0 or 1", (s) => (s.linux.resources.cpu = { idle: 2 }), "linux.resources.cpu.idle: must be an integer from 0 to 1"],
  ["pids without limit", (s) => (s.linux.resources.pids = {}), "linux.resources.pids.limit: is required"],
  ["blockIO weight past uint16", (s) => (s.linux.resources.blockIO = { weight: 70000 }), "linux.resources.blockIO.weight: must be a uint16"],
  ["blockIO weightDevice without weights", (s) => (s.linux.resources.blockIO = { weightDevice: [{ major: 8, minor: 0 }] }), "linux.resources.blockIO.weightDevice[0]: must set weight or leafWeight"],
  ["blockIO throttle without rate", (s) => (s.linux.resources.blockIO = { throttleWriteIOPSDevice: [{ major: 8, minor: 0 }] }), "linux.resources.blockIO.throttleWriteIOPSDevice[0].rate: is required"],
  ["hugepage size malformed", (s) => (s.linux.resources.hugepageLimits = [{ pageSize: "2M", limit: 1 }]), 'linux.resources.hugepageLimits[0].pageSize: must be <size><unit>B such as 2MB or 1GB, got "2M"'],
  ["network priority without name", (s) => (s.linux.resources.network = { priorities: [{ priority: 1 }] }), "linux.resources.network.priorities[0].name: is required"],
  ["rdma without either limit", (s) => (s.linux.resources.rdma = { mlx: {} }), 'linux.resources.rdma["mlx"]: must set hcaHandles or hcaObjects'],
  ["unified key a path", (s) => (s.linux.resources.unified = { "../../memory.max": "1" }), 'linux.resources.unified["../../memory.max"]: must name a cgroup v2 interface file'],
  ["sysctl outside any namespace", (s) => (s.linux.sysctl = { "kernel.panic": "1" }), 'linux.sysctl["kernel.panic"]: is not in a kernel namespace'],
  ["net sysctl without a network namespace", (s) => ((s.linux.namespaces = s.linux.namespaces.filter((n: { type: string }) => n.type !== "network")), (s.linux.sysctl = { "net.ipv4.ip_forward": "1" })), 'linux.sysctl["net.ipv4.ip_forward"]: needs a network namespace'],
  ["sysctl value not a string", (s) => (s.linux.sysctl = { "net.core.somaxconn": 1024 }), 'linux.sysctl["net.core.somaxconn"]: must be a string, got 1024'],
  ["seccomp without defaultAction", (s) => (s.linux.seccomp = {}), "linux.seccomp.defaultAction: is required"],
  ["seccomp action unknown", (s) => (s.linux.seccomp = { defaultAction: "SCMP_ACT_DENY" }), "linux.seccomp.defaultAction: must be one of SCMP_ACT_KILL"],
  ["seccomp notify as default", (s) => (s.linux.seccomp = { defaultAction: "SCMP_ACT_NOTIFY" }), "linux.seccomp.defaultAction: cannot be SCMP_ACT_NOTIFY"],
  ["seccomp errno with an action that has none", (s) => (s.linux.seccomp = { defaultAction: "SCMP_ACT_ALLOW", defaultErrnoRet: 1 }), "linux.seccomp.defaultErrnoRet: is set, but defaultAction SCMP_ACT_ALLOW returns no errno"],
  ["seccomp arch unknown", (s) => (s.linux.seccomp = { defaultAction: "SCMP_ACT_ALLOW", architectures: ["SCMP_ARCH_Z80"] }), "linux.seccomp.architectures[0]: must be one of libseccomp's architectures (SCMP_ARCH_X86"],
  ["seccomp flag unknown", (s) => (s.linux.seccomp = { defaultAction: "SCMP_ACT_ALLOW", flags: ["FAST"] }), "linux.seccomp.flags[0]: must be one of SECCOMP_FILTER_FLAG_TSYNC"],
  ["seccomp metadata without listener", (s) => (s.linux.seccomp = { defaultAction: "SCMP_ACT_ALLOW", listenerMetadata: "x" }), "linux.seccomp.listenerMetadata: must not be set without listenerPath"],
  ["seccomp rule without names", (s) => (s.linux.seccomp = { defaultAction: "SCMP_ACT_ALLOW", syscalls: [{ names: [], action: "SCMP_ACT_ERRNO" }] }), "linux.seccomp.syscalls[0].names: must be a non-empty array"],
  ["seccomp rule errno with kill", (s) => (s.linux.seccomp = { defaultAction: "SCMP_ACT_ALLOW", syscalls: [{ names: ["read"], action: "SCMP_ACT_KILL", errnoRet: 1 }] }), "linux.seccomp.syscalls[0].errnoRet: is set, but action SCMP_ACT_KILL returns no errno"],
  ["seccomp arg index past 5", (s) => (s.linux.seccomp = { defaultAction: "SCMP_ACT_ALLOW", syscalls: [{ names: ["read"], action: "SCMP_ACT_LOG", args: [{ index: 6, value: 0, op: "SCMP_CMP_EQ" }] }] }), "linux.seccomp.syscalls[0].args[0].index: must be an integer from 0 to 5"],
  ["seccomp arg op unknown", (s) => (s.linux.seccomp = { defaultAction: "SCMP_ACT_ALLOW", syscalls: [{ names: ["read"], action: "SCMP_ACT_LOG", args: [{ index: 0, value: 0, op: "SCMP_CMP_IN" }] }] }), "linux.seccomp.syscalls[0].args[0].op: must be one of SCMP_CMP_NE"],
  ["rootfsPropagation unknown", (s) => (s.linux.rootfsPropagation = "public"), 'linux.rootfsPropagation: must be one of shared, slave, private, unbindable'],
  ["maskedPaths relative", (s) => s.linux.maskedPaths.push("proc/x"), 'linux.maskedPaths[10]: must be an absolute path, got "proc/x"'],
  ["readonlyPaths not strings", (s) => (s.linux.readonlyPaths = [null]), "linux.readonlyPaths[0]: must be a string, got null"],
  ["personality domain unknown", (s) => (s.linux.personality = { domain: "LINUX64" }), "linux.personality.domain: must be one of LINUX, LINUX32"],
  ["personality flags set", (s) => (s.linux.personality = { domain: "LINUX", flags: ["ADDR_NO_RANDOMIZE"] }), "linux.personality.flags[0]: is not supported"],
  ["intelRdt memBwSchema without MB:", (s) => (s.linux.intelRdt = { memBwSchema: "L3:0=1" }), 'linux.intelRdt.memBwSchema: must start with "MB:"'],
  ["intelRdt closID a path", (s) => (s.linux.intelRdt = { closID: "../x" }), "linux.intelRdt.closID: must be a directory name in resctrl"],
];

for (const [name, change, message] of CASES) {
  test(`refused: ${name}`, () => refused(change, message));
}

test("a whole document that is not an object is refused by name", () => {
  for (const value of [null, [], "x", 1, true]) {
    assert.throws(() => checkSpec(value, FILE), (error: unknown) => error instanceof MoatError && error.message.startsWith(`${FILE}: must be an object`));
  }
});

test("an unknown capability is a warning naming file and field, not an error, as the spec requires", () => {
  const { warnings } = checkSpec(spec((s) => (s.process.capabilities = { bounding: ["CAP_KILL", "CAP_FLY"], ambient: ["cap_kill"] })), FILE);
  assert.deepEqual(warnings, [
    `${FILE}: process.capabilities.bounding[1]: "CAP_FLY" is not a capability of capabilities(7) (Linux 6.1, the guest's); ignored`,
    `${FILE}: process.capabilities.ambient[0]: "cap_kill" is not a capability of capabilities(7) (Linux 6.1, the guest's); ignored`,
  ]);
  assert.deepEqual(checkSpec(spec(), FILE).warnings, []);
});

test("consoleSize is ignored without a terminal, as the spec requires", () => {
  checkSpec(spec((s) => (s.process.consoleSize = "garbage")), FILE);
});

test("an exec's process document is checked by the same rules", () => {
  checkProcessDocument({ args: ["ls"], cwd: "/" }, "p.json");
  assert.throws(() => checkProcessDocument({ args: ["ls"], cwd: "/", env: ["NOEQUALS"] }, "p.json"), /^MoatError: p.json: env\[0\]: must be NAME=VALUE/);
});

test("quoted values are bounded and their control characters escaped", () => {
  assert.throws(
    () => checkSpec(spec((s) => (s.process.cwd = `x\u001b[31m${"y".repeat(200)}`)), FILE),
    (error: unknown) => error instanceof MoatError && !/[\u0000-\u001f\u007f]/.test(error.message) && error.message.length < 200,
  );
});

// Garbage in: whatever the document holds, the checker answers true or throws MOAT_BUNDLE_INVALID, nothing else.
function onlyBundleErrors(document: unknown): void {
  try {
    checkSpec(document, FILE);
  } catch (error) {
    if (!(error instanceof MoatError) || error.code !== "MOAT_BUNDLE_INVALID") throw error;
  }
}

test("property: any JSON value is checked without an exception other than MOAT_BUNDLE_INVALID", () => {
  fc.assert(fc.property(fc.jsonValue(), onlyBundleErrors), { numRuns: 2000 });
});

/** Every field of `document`, at any depth, as its holder and key. */
function fieldsOf(document: unknown): Array<[Record<string, unknown> | unknown[], string | number]> {
  const holders: Array<[Record<string, unknown> | unknown[], string | number]> = [];
  const walk = (value: unknown) => {
    if (Array.isArray(value)) {
      value.forEach((item, index) => {
        holders.push([value, index]);
        walk(item);
      });
    } else if (typeof value === "object" && value !== null) {
      for (const [key, item] of Object.entries(value)) {
        holders.push([value as Record<string, unknown>, key]);
        walk(item);
      }
    }
  };
  walk(document);
  return holders;
}

/** fullSpec with its field number `pick` replaced by `garbage`, or removed. */
function withGarbage(pick: number, garbage: unknown, remove: boolean): Record<string, any> {
  const document = fullSpec();
  const fields = fieldsOf(document);
  const [holder, key] = fields[pick % fields.length]!; // the spec has fields
  if (remove && !Array.isArray(holder)) delete (holder as Record<string, unknown>)[key];
  else (holder as Record<string | number, unknown>)[key] = garbage;
  return document;
}

test("every field of a full spec, replaced by each kind of wrong value or removed, is checked without any other exception", () => {
  const garbage = [null, 0, -1, 1.5, 2 ** 64 + 4096, "", "x", "/", [], {}, [null], { a: null }, true, ["x"], [{}]];
  const count = fieldsOf(fullSpec()).length;
  for (let pick = 0; pick < count; pick++) {
    onlyBundleErrors(withGarbage(pick, undefined, true));
    for (const value of garbage) onlyBundleErrors(withGarbage(pick, value, false));
  }
});

test("property: a full spec with any one field replaced by any JSON value or removed is checked without any other exception", () => {
  fc.assert(
    fc.property(fc.nat(), fc.jsonValue(), fc.boolean(), (pick, garbage, remove) => onlyBundleErrors(withGarbage(pick, garbage, remove))),
    { numRuns: 3000 },
  );
});
