// config.json checked against what the OCI runtime spec (config.md, config-linux.md,
// runtime.md; 1.0.x to 1.1) says each value may be, before anything starts: types, the
// enumerations it lists, the ranges the kernel interfaces behind each value accept, and every
// "MUST generate an error" it states. A runtime that finds an invalid value MUST generate an
// error (config.md, "Valid values"), and generating one MUST leave the environment as if the
// operation was never attempted (runtime.md, "Errors"): so the checks run on the host, in the
// CLI before moatd is asked and again in moatd, not in the guest after a VM has started.
// Unknown properties are allowed (config.md, "Extensibility"). Written from the spec's text.
import { hostCgroupTarget } from "../cgroup/index.js";
import { describe, JsonNode } from "./json-node.js";

/** The major version of the spec moat implements; minor versions are compatible (config.md, "Specification version"). */
const SPEC_MAJOR = 1;

/** SemVer 2.0.0, as ociVersion MUST be. */
const SEMVER =
  /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$/;

const NAMESPACES = ["pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time"] as const;
type NamespaceType = (typeof NAMESPACES)[number];

/** getrlimit(2)'s resources on Linux. */
const RLIMITS = [
  "RLIMIT_AS", "RLIMIT_CORE", "RLIMIT_CPU", "RLIMIT_DATA", "RLIMIT_FSIZE", "RLIMIT_LOCKS", "RLIMIT_MEMLOCK", "RLIMIT_MSGQUEUE",
  "RLIMIT_NICE", "RLIMIT_NOFILE", "RLIMIT_NPROC", "RLIMIT_RSS", "RLIMIT_RTPRIO", "RLIMIT_RTTIME", "RLIMIT_SIGPENDING", "RLIMIT_STACK",
] as const;

/**
 * capabilities(7) as of the guest's kernel (6.1: CAP_CHOWN = 0 … CAP_CHECKPOINT_RESTORE = 40).
 * A name not among them is a warning, not an error: the spec says a capability that cannot be
 * mapped or granted MUST be logged as a warning and runtimes SHOULD NOT fail for it (crun in
 * the guest, like runc, ignores it).
 */
const CAPABILITIES = [
  "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID", "CAP_SETUID",
  "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK",
  "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN",
  "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
  "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
  "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
] as const;
const CAPABILITY_SETS = ["effective", "bounding", "inheritable", "permitted", "ambient"] as const;

const SCHED_POLICIES = ["SCHED_OTHER", "SCHED_FIFO", "SCHED_RR", "SCHED_BATCH", "SCHED_ISO", "SCHED_IDLE", "SCHED_DEADLINE"] as const;
const SCHED_FLAGS = [
  "SCHED_FLAG_RESET_ON_FORK", "SCHED_FLAG_RECLAIM", "SCHED_FLAG_DL_OVERRUN", "SCHED_FLAG_KEEP_POLICY", "SCHED_FLAG_KEEP_PARAMS",
  "SCHED_FLAG_UTIL_CLAMP_MIN", "SCHED_FLAG_UTIL_CLAMP_MAX",
] as const;
const IOPRIO_CLASSES = ["IOPRIO_CLASS_RT", "IOPRIO_CLASS_BE", "IOPRIO_CLASS_IDLE"] as const;

const HOOKS = ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"] as const;

const SECCOMP_ACTIONS = [
  "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP", "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE",
  "SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY",
] as const;
/** The actions that carry an errno; any other with errnoRet MUST be an error. */
const SECCOMP_ERRNO_ACTIONS: readonly string[] = ["SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"];
const SECCOMP_ARCHES = [
  "SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32", "SCMP_ARCH_ARM", "SCMP_ARCH_AARCH64", "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64",
  "SCMP_ARCH_MIPS64N32", "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_PPC", "SCMP_ARCH_PPC64",
  "SCMP_ARCH_PPC64LE", "SCMP_ARCH_S390", "SCMP_ARCH_S390X", "SCMP_ARCH_PARISC", "SCMP_ARCH_PARISC64", "SCMP_ARCH_RISCV64",
] as const;
const SECCOMP_FLAGS = ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"] as const;
const SECCOMP_OPS = ["SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ"] as const;
/** A system call has at most six arguments. */
const SYSCALL_ARGS_MAX = 6;

/** The spec's four; runc and crun also take the recursive spellings, which podman writes. */
const ROOTFS_PROPAGATIONS = ["shared", "slave", "private", "unbindable", "rshared", "rslave", "rprivate", "runbindable"] as const;
const DEVICE_TYPES = ["c", "b", "u", "p"] as const;
const ALLOWED_DEVICE_TYPES = ["a", "c", "b"] as const;
const TIME_CLOCKS = ["monotonic", "boottime"] as const;
const PERSONALITY_DOMAINS = ["LINUX", "LINUX32"] as const;

/** sethostname(2) and setdomainname(2) take at most this many bytes (HOST_NAME_MAX). */
const HOST_NAME_MAX_BYTES = 64;
/** oom_score_adj's range (proc(5)). */
const OOM_SCORE_ADJ = { min: -1000, max: 1000 };
/** The CFS period and quota the kernel accepts, in µs (cpu.cfs_period_us: 1 ms to 1 s; cpu.cfs_quota_us: at least 1 ms). */
const CFS_PERIOD_US = { min: 1000, max: 1_000_000 };
const CFS_QUOTA_MIN_US = 1000;

/** The sysctls the kernel namespaces, by the namespace that must be the container's own (runc's rule). */
const IPC_SYSCTLS = ["kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"];

export interface SpecCheckResult {
  /** The namespaces the spec gives the container (a type listed without path is a new one). */
  namespaces: Map<NamespaceType, { path: string | undefined }>;
  /** What the spec says to log as a warning and go on (`<file>: <field>: <what>`), for the caller to show. */
  warnings: string[];
}

/**
 * Checks `document` (config.json parsed) for Linux; `file` names it in errors. Throws
 * MOAT_BUNDLE_INVALID naming the first invalid field; throws nothing else.
 */
export function checkSpec(document: unknown, file: string): SpecCheckResult {
  const warnings: string[] = [];
  const spec = new JsonNode(document, "", file);
  spec.object();
  checkVersion(spec.at("ociVersion"));
  const root = spec.at("root");
  if (!root.present) throw root.error("is required");
  const rootPath = root.at("path").string();
  if (rootPath.length === 0) throw root.at("path").error("must be a non-empty path");
  root.at("readonly").optional((node) => node.boolean());
  spec.at("mounts").optional((node) => node.array().forEach(checkMount));
  const process = spec.at("process");
  // OPTIONAL in the spec until start; moat's create also starts the process's VM, so it needs it now.
  if (!process.present) throw process.error("is required");
  checkProcess(process, warnings);
  const hostname = spec.at("hostname").optional((node) => hostName(node));
  const domainname = spec.at("domainname").optional((node) => hostName(node));
  spec.at("hooks").optional(checkHooks);
  spec.at("annotations").optional(checkAnnotations);
  const linux = spec.at("linux");
  const namespaces = linux.present ? checkLinux(linux) : new Map<NamespaceType, { path: string | undefined }>();
  // Setting them in the runtime's UTS namespace would rename the host (here: the guest every container of the sandbox shares).
  if (hostname && !namespaces.has("uts")) throw spec.at("hostname").error("needs a UTS namespace of the container's own: add {\"type\": \"uts\"} to linux.namespaces");
  if (domainname && !namespaces.has("uts")) throw spec.at("domainname").error("needs a UTS namespace of the container's own: add {\"type\": \"uts\"} to linux.namespaces");
  return { namespaces, warnings };
}

/**
 * Checks a process object alone (`moat exec --process`, a task's exec): the same rules as
 * config.json's process; `file` names it in errors.
 */
export function checkProcessDocument(document: unknown, file: string): string[] {
  const warnings: string[] = [];
  checkProcess(new JsonNode(document, "", file), warnings);
  return warnings;
}

function checkVersion(node: JsonNode): void {
  if (!node.present) throw node.error("is required");
  const version = node.string();
  const match = SEMVER.exec(version);
  if (!match) throw node.error(`must be a SemVer 2.0.0 version such as "1.0.2", got ${describe(version)}`);
  if (Number(match[1]) !== SPEC_MAJOR) throw node.error(`must be a version ${SPEC_MAJOR}.x of the runtime spec (moat implements ${SPEC_MAJOR}.0 to 1.1), got ${describe(version)}`);
}

function checkMount(mount: JsonNode): void {
  mount.object();
  const destination = mount.at("destination");
  if (!destination.present) throw destination.error("is required");
  destination.absolutePath();
  mount.at("type").optional((node) => node.string());
  mount.at("source").optional((node) => node.string());
  mount.at("options").optional((node) =>
    node.array().forEach((option) => {
      if (option.string().length === 0 || option.string().includes("\0")) throw option.error("must be a non-empty mount option without NUL bytes");
    }),
  );
  for (const key of ["uidMappings", "gidMappings"]) mount.at(key).optional((node) => node.array().forEach(checkIdMapping));
}

function checkProcess(process: JsonNode, warnings: string[]): void {
  process.object();
  const terminal = process.at("terminal").optional((node) => node.boolean()) ?? false;
  // Runtimes MUST ignore consoleSize without a terminal, so its shape matters only with one.
  if (terminal) {
    process.at("consoleSize").optional((size) => {
      size.object();
      for (const key of ["height", "width"]) {
        if (!size.at(key).present) throw size.at(key).error("is required");
        size.at(key).integer("uint32");
      }
    });
  }
  const cwd = process.at("cwd");
  if (!cwd.present) throw cwd.error("is required");
  cwd.absolutePath();
  process.at("env").optional(checkEnv);
  const args = process.at("args");
  if (!Array.isArray(args.value) || args.value.length === 0 || !args.value.every((arg) => typeof arg === "string")) throw args.error("must be a non-empty array of strings");
  args.array().forEach((arg) => {
    if (arg.string().includes("\0")) throw arg.error("must not contain a NUL byte");
  });
  if ((args.value[0] as string).length === 0) throw args.error("the first entry (the program) must not be empty"); // every entry was checked to be a string
  process.at("commandLine").optional((node) => node.string());
  process.at("rlimits").optional(checkRlimits);
  process.at("user").optional((user) => {
    user.object();
    for (const key of ["uid", "gid"]) {
      if (!user.at(key).present) throw user.at(key).error("is required");
      user.at(key).integer("uint32");
    }
    user.at("umask").optional((node) => node.integer("uint32", { max: 0o7777 }));
    user.at("additionalGids").optional((node) => node.array().forEach((gid) => gid.integer("uint32")));
    user.at("username").optional((node) => node.string());
  });
  process.at("apparmorProfile").optional((node) => node.string());
  process.at("selinuxLabel").optional((node) => node.string());
  process.at("noNewPrivileges").optional((node) => node.boolean());
  process.at("oomScoreAdj").optional((node) => node.integer("int32", OOM_SCORE_ADJ));
  process.at("capabilities").optional((capabilities) => {
    capabilities.object();
    for (const set of CAPABILITY_SETS) {
      capabilities.at(set).optional((node) =>
        node.array().forEach((name) => {
          if (!(CAPABILITIES as readonly string[]).includes(name.string())) warnings.push(`${name.file}: ${name.path}: ${describe(name.value)} is not a capability of capabilities(7) (Linux 6.1, the guest's); ignored`);
        }),
      );
    }
  });
  process.at("scheduler").optional(checkScheduler);
  process.at("ioPriority").optional((priority) => {
    priority.object();
    if (!priority.at("class").present) throw priority.at("class").error("is required");
    priority.at("class").oneOf(IOPRIO_CLASSES);
    if (!priority.at("priority").present) throw priority.at("priority").error("is required");
    priority.at("priority").integer("int32", { min: 0, max: 7 });
  });
}

/** IEEE 1003.1 environ: each entry NAME=VALUE, the name not empty; NUL cannot cross execve. */
function checkEnv(env: JsonNode): void {
  for (const entry of env.array()) {
    const text = entry.string();
    const equals = text.indexOf("=");
    if (equals <= 0) throw entry.error(`must be NAME=VALUE, got ${describe(text)}`);
    if (text.includes("\0")) throw entry.error("must not contain a NUL byte");
  }
}

function checkRlimits(rlimits: JsonNode): void {
  const seen = new Set<string>();
  for (const rlimit of rlimits.array()) {
    rlimit.object();
    const typeNode = rlimit.at("type");
    if (!typeNode.present) throw typeNode.error("is required");
    const type = typeNode.oneOf(RLIMITS, "the resources of getrlimit(2)");
    if (seen.has(type)) throw typeNode.error(`${type} is set twice (the spec requires an error for duplicate rlimits)`);
    seen.add(type);
    for (const key of ["soft", "hard"]) {
      if (!rlimit.at(key).present) throw rlimit.at(key).error("is required");
    }
    const soft = rlimit.at("soft").integer("uint64");
    const hard = rlimit.at("hard").integer("uint64");
    // setrlimit(2) refuses a soft limit above the hard one (EINVAL).
    if (soft > hard) throw rlimit.at("soft").error(`must not be above hard (${hard}), got ${soft}`);
  }
}

function checkScheduler(scheduler: JsonNode): void {
  scheduler.object();
  if (!scheduler.at("policy").present) throw scheduler.at("policy").error("is required");
  scheduler.at("policy").oneOf(SCHED_POLICIES);
  scheduler.at("nice").optional((node) => node.integer("int32", { min: -20, max: 19 }));
  scheduler.at("priority").optional((node) => node.integer("int32"));
  scheduler.at("flags").optional((node) => node.array().forEach((flag) => flag.oneOf(SCHED_FLAGS)));
  for (const key of ["runtime", "deadline", "period"]) scheduler.at(key).optional((node) => node.integer("uint64"));
}

function hostName(node: JsonNode): string {
  const name = node.string();
  if (Buffer.byteLength(name) > HOST_NAME_MAX_BYTES) throw node.error(`must be at most ${HOST_NAME_MAX_BYTES} bytes, got ${Buffer.byteLength(name)}`);
  if (name.includes("\0")) throw node.error("must not contain a NUL byte");
  return name;
}

function checkHooks(hooks: JsonNode): void {
  hooks.object();
  for (const name of HOOKS) {
    hooks.at(name).optional((list) =>
      list.array().forEach((hook) => {
        hook.object();
        if (!hook.at("path").present) throw hook.at("path").error("is required");
        hook.at("path").absolutePath();
        hook.at("args").optional((args) => args.array().forEach((arg) => arg.string()));
        hook.at("env").optional(checkEnv);
        hook.at("timeout").optional((node) => node.integer("int32", { min: 1 }));
      }),
    );
  }
}

function checkAnnotations(annotations: JsonNode): void {
  for (const [key, value] of annotations.entries()) {
    if (key.length === 0) throw annotations.error("keys must not be empty");
    value.string();
  }
}

function checkIdMapping(mapping: JsonNode): void {
  mapping.object();
  for (const key of ["containerID", "hostID", "size"]) {
    if (!mapping.at(key).present) throw mapping.at(key).error("is required");
  }
  const containerId = mapping.at("containerID").integer("uint32");
  const hostId = mapping.at("hostID").integer("uint32");
  // The kernel refuses an empty range and one past the last id (user_namespaces(7)).
  const size = mapping.at("size").integer("uint32", { min: 1 });
  const last = 0xffff_ffff;
  if (containerId + size - 1 > last || hostId + size - 1 > last) throw mapping.at("size").error(`the range runs past id ${last}`);
}

function checkLinux(linux: JsonNode): Map<NamespaceType, { path: string | undefined }> {
  linux.object();
  const namespaces = new Map<NamespaceType, { path: string | undefined }>();
  linux.at("namespaces").optional((list) =>
    list.array().forEach((namespace) => {
      namespace.object();
      const typeNode = namespace.at("type");
      if (!typeNode.present) throw typeNode.error("is required");
      const type = typeNode.oneOf(NAMESPACES);
      if (namespaces.has(type)) throw typeNode.error(`"${type}" is listed twice (the spec requires an error for duplicate namespaces)`);
      namespaces.set(type, { path: namespace.at("path").optional((node) => node.absolutePath()) });
    }),
  );
  const mappings = ["uidMappings", "gidMappings"].map((key) => linux.at(key).optional((node) => node.array().map(checkIdMapping).length) ?? 0);
  const userNamespace = namespaces.get("user");
  if (!userNamespace && mappings.some((count) => count > 0)) {
    throw linux.at(mappings[0]! > 0 ? "uidMappings" : "gidMappings").error("needs a user namespace: add {\"type\": \"user\"} to linux.namespaces"); // two entries
  }
  if (userNamespace && userNamespace.path === undefined && mappings.some((count) => count === 0)) {
    throw linux.at(mappings[0] === 0 ? "uidMappings" : "gidMappings").error("must map at least one id: a new user namespace without mappings runs everything as the overflow id");
  }
  linux.at("timeOffsets").optional((offsets) => {
    for (const [clock, offset] of offsets.entries()) {
      if (!(TIME_CLOCKS as readonly string[]).includes(clock)) throw offset.error(`is not a clock a time namespace offsets (${TIME_CLOCKS.join(", ")})`);
      offset.object();
      offset.at("secs").optional((node) => node.integer("int64"));
      offset.at("nanosecs").optional((node) => node.integer("uint32", { max: 999_999_999 }));
    }
    if (!namespaces.has("time") && offsets.entries().length > 0) throw offsets.error("needs a time namespace: add {\"type\": \"time\"} to linux.namespaces");
  });
  linux.at("devices").optional((devices) =>
    devices.array().forEach((device) => {
      device.object();
      if (!device.at("type").present) throw device.at("type").error("is required");
      const type = device.at("type").oneOf(DEVICE_TYPES);
      if (!device.at("path").present) throw device.at("path").error("is required");
      device.at("path").absolutePath();
      for (const key of ["major", "minor"]) {
        const number = device.at(key);
        if (!number.present && type !== "p") throw number.error(`is required for a device of type "${type}"`);
        number.optional((node) => node.integer("int64", { min: 0 }));
      }
      device.at("fileMode").optional((node) => node.integer("uint32", { max: 0o7777 }));
      for (const key of ["uid", "gid"]) device.at(key).optional((node) => node.integer("uint32"));
    }),
  );
  linux.at("cgroupsPath").optional((node) => {
    const path = node.string();
    if (path !== "") hostCgroupTarget(path, node.file); // its own errors name linux.cgroupsPath
  });
  linux.at("resources").optional(checkResources);
  linux.at("sysctl").optional((sysctl) => checkSysctl(sysctl, namespaces));
  linux.at("seccomp").optional(checkSeccomp);
  linux.at("rootfsPropagation").optional((node) => node.oneOf(ROOTFS_PROPAGATIONS));
  for (const key of ["maskedPaths", "readonlyPaths"]) linux.at(key).optional((node) => node.array().forEach((path) => path.absolutePath()));
  linux.at("mountLabel").optional((node) => node.string());
  linux.at("personality").optional((personality) => {
    personality.object();
    if (!personality.at("domain").present) throw personality.at("domain").error("is required");
    personality.at("domain").oneOf(PERSONALITY_DOMAINS);
    personality.at("flags").optional((flags) =>
      flags.array().forEach((flag) => {
        throw flag.error(`is not supported: the spec defines no personality flags, got ${describe(flag.value)}`);
      }),
    );
  });
  linux.at("intelRdt").optional((rdt) => {
    rdt.object();
    rdt.at("closID").optional((node) => {
      const id = node.string();
      if (id.includes("/") || id === "." || id === "..") throw node.error(`must be a directory name in resctrl, got ${describe(id)}`);
    });
    rdt.at("l3CacheSchema").optional((node) => node.string());
    rdt.at("memBwSchema").optional((node) => {
      const schema = node.string();
      if (!schema.startsWith("MB:") || schema.includes("\n")) throw node.error(`must start with "MB:" and be one line, got ${describe(schema)}`);
    });
    for (const key of ["enableCMT", "enableMBM"]) rdt.at(key).optional((node) => node.boolean());
  });
  return namespaces;
}

function checkResources(resources: JsonNode): void {
  resources.object();
  resources.at("devices").optional((devices) =>
    devices.array().forEach((device) => {
      device.object();
      if (!device.at("allow").present) throw device.at("allow").error("is required");
      device.at("allow").boolean();
      device.at("type").optional((node) => node.oneOf(ALLOWED_DEVICE_TYPES));
      // -1 is the wildcard ("*") some callers write for an unset number.
      for (const key of ["major", "minor"]) device.at(key).optional((node) => node.integer("int64", { min: -1 }));
      device.at("access").optional((node) => {
        const access = node.string();
        if (!/^(?!.*(.).*\1)[rwm]{0,3}$/.test(access)) throw node.error(`must be made of r, w and m, each at most once, got ${describe(access)}`);
      });
    }),
  );
  resources.at("memory").optional(checkMemory);
  resources.at("cpu").optional(checkCpu);
  resources.at("pids").optional((pids) => {
    pids.object();
    if (!pids.at("limit").present) throw pids.at("limit").error("is required");
    pids.at("limit").integer("int64", { min: -1 });
  });
  resources.at("blockIO").optional(checkBlockIo);
  resources.at("hugepageLimits").optional((limits) =>
    limits.array().forEach((limit) => {
      limit.object();
      if (!limit.at("pageSize").present) throw limit.at("pageSize").error("is required");
      const size = limit.at("pageSize").string();
      if (!/^[1-9]\d*[KMGTP]B$/.test(size)) throw limit.at("pageSize").error(`must be <size><unit>B such as 2MB or 1GB, got ${describe(size)}`);
      if (!limit.at("limit").present) throw limit.at("limit").error("is required");
      limit.at("limit").integer("uint64");
    }),
  );
  resources.at("network").optional((network) => {
    network.object();
    network.at("classID").optional((node) => node.integer("uint32"));
    network.at("priorities").optional((priorities) =>
      priorities.array().forEach((priority) => {
        priority.object();
        for (const key of ["name", "priority"]) {
          if (!priority.at(key).present) throw priority.at(key).error("is required");
        }
        priority.at("name").string();
        priority.at("priority").integer("uint32");
      }),
    );
  });
  resources.at("rdma").optional((rdma) => {
    for (const [, limit] of rdma.entries()) {
      limit.object();
      const handles = limit.at("hcaHandles").optional((node) => node.integer("uint32"));
      const objects = limit.at("hcaObjects").optional((node) => node.integer("uint32"));
      if (handles === undefined && objects === undefined) throw limit.error("must set hcaHandles or hcaObjects (the spec requires at least one)");
    }
  });
  resources.at("unified").optional((unified) => {
    for (const [key, value] of unified.entries()) {
      // A key is a file in the container's cgroup directory, never a path out of it.
      if (!/^[a-z][a-z0-9_]*\.[A-Za-z0-9_.]+$/.test(key)) throw value.error("must name a cgroup v2 interface file such as memory.high");
      value.string();
    }
  });
}

/** Memory values are bytes, or -1 for unlimited. */
function checkMemory(memory: JsonNode): void {
  memory.object();
  const limits = new Map<string, number>();
  for (const key of ["limit", "reservation", "swap", "kernel", "kernelTCP"]) {
    const value = memory.at(key).optional((node) => node.integer("int64", { min: -1 }));
    if (value !== undefined) limits.set(key, value);
  }
  memory.at("swappiness").optional((node) => node.integer("uint64", { max: 100 }));
  for (const key of ["disableOOMKiller", "useHierarchy", "checkBeforeUpdate"]) memory.at(key).optional((node) => node.boolean());
  const limit = limits.get("limit");
  const swap = limits.get("swap");
  // swap is memory + swap: below the memory limit it cannot be set (cgroup v1 refuses it, v2 has no negative swap.max).
  if (limit !== undefined && swap !== undefined && limit > 0 && swap > 0 && swap < limit) {
    throw memory.at("swap").error(`is memory + swap, so it must be at least limit (${limit}), got ${swap}`);
  }
}

function checkCpu(cpu: JsonNode): void {
  cpu.object();
  cpu.at("shares").optional((node) => node.integer("uint64"));
  const quota = cpu.at("quota").optional((node) => node.integer("int64", { min: -1 }));
  if (quota !== undefined && quota > 0 && quota < CFS_QUOTA_MIN_US) throw cpu.at("quota").error(`must be -1 (no limit) or at least ${CFS_QUOTA_MIN_US} µs, got ${quota}`);
  const burst = cpu.at("burst").optional((node) => node.integer("uint64"));
  if (burst !== undefined && quota !== undefined && quota > 0 && burst > quota) throw cpu.at("burst").error(`must be no larger than quota (${quota}), got ${burst}`);
  const period = cpu.at("period").optional((node) => node.integer("uint64"));
  // 0 is how many callers write "unset".
  if (period !== undefined && period !== 0 && (period < CFS_PERIOD_US.min || period > CFS_PERIOD_US.max)) {
    throw cpu.at("period").error(`must be from ${CFS_PERIOD_US.min} to ${CFS_PERIOD_US.max} µs, got ${period}`);
  }
  cpu.at("realtimeRuntime").optional((node) => node.integer("int64", { min: -1 }));
  cpu.at("realtimePeriod").optional((node) => node.integer("uint64"));
  for (const key of ["cpus", "mems"]) cpu.at(key).optional((node) => cpuList(node));
  cpu.at("idle").optional((node) => node.integer("int64", { min: 0, max: 1 }));
}

/**
 * A cpuset list ("0-3,5"); empty means unset. Returns the numbers it names (bounded: a
 * range may not be wider than the kernel's largest CPU count).
 */
export function cpuList(node: JsonNode): Set<number> {
  const text = node.string();
  const numbers = new Set<number>();
  if (text.trim() === "") return numbers;
  for (const part of text.split(",")) {
    const match = /^\s*(\d{1,5})(?:-(\d{1,5}))?\s*$/.exec(part);
    const first = Number(match?.[1]);
    const last = match?.[2] === undefined ? first : Number(match[2]);
    if (!match || last < first || last >= CPUSET_MAX) throw node.error(`must be a list such as "0-3,5" of numbers below ${CPUSET_MAX}, got ${describe(text)}`);
    for (let number = first; number <= last; number++) numbers.add(number);
  }
  return numbers;
}

/** The kernel's largest CONFIG_NR_CPUS (and node count): cpusets name nothing above it. */
const CPUSET_MAX = 8192;

function checkBlockIo(blockIo: JsonNode): void {
  blockIo.object();
  for (const key of ["weight", "leafWeight"]) blockIo.at(key).optional((node) => node.integer("uint16"));
  const device = (entry: JsonNode) => {
    entry.object();
    for (const key of ["major", "minor"]) {
      if (!entry.at(key).present) throw entry.at(key).error("is required");
      entry.at(key).integer("int64", { min: 0 });
    }
  };
  blockIo.at("weightDevice").optional((list) =>
    list.array().forEach((entry) => {
      device(entry);
      const weight = entry.at("weight").optional((node) => node.integer("uint16"));
      const leaf = entry.at("leafWeight").optional((node) => node.integer("uint16"));
      if (weight === undefined && leaf === undefined) throw entry.error("must set weight or leafWeight (the spec requires at least one)");
    }),
  );
  for (const key of ["throttleReadBpsDevice", "throttleWriteBpsDevice", "throttleReadIOPSDevice", "throttleWriteIOPSDevice"]) {
    blockIo.at(key).optional((list) =>
      list.array().forEach((entry) => {
        device(entry);
        if (!entry.at("rate").present) throw entry.at("rate").error("is required");
        entry.at("rate").integer("uint64");
      }),
    );
  }
}

/**
 * A sysctl is set in the container's own kernel namespace, never the runtime's (that is the
 * guest's, which every container of the sandbox shares): as runc does, only those the kernel
 * namespaces are taken, each needing that namespace to be the container's.
 */
function checkSysctl(sysctl: JsonNode, namespaces: Map<NamespaceType, { path: string | undefined }>): void {
  for (const [name, value] of sysctl.entries()) {
    value.string();
    const key = name.replaceAll("/", ".");
    if (!/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_*:-]+)+$/.test(key)) throw value.error("is not a sysctl name such as net.ipv4.ip_forward");
    const needs: NamespaceType | undefined =
      IPC_SYSCTLS.includes(key) || key.startsWith("fs.mqueue.") ? "ipc" : key.startsWith("net.") ? "network" : key === "kernel.hostname" || key === "kernel.domainname" ? "uts" : undefined;
    if (needs === undefined) throw value.error("is not in a kernel namespace, so it cannot be set for one container");
    if (!namespaces.has(needs)) throw value.error(`needs a ${needs} namespace of the container's own: add {"type": "${needs}"} to linux.namespaces`);
  }
}

function checkSeccomp(seccomp: JsonNode): void {
  seccomp.object();
  if (!seccomp.at("defaultAction").present) throw seccomp.at("defaultAction").error("is required");
  const defaultAction = seccomp.at("defaultAction").oneOf(SECCOMP_ACTIONS);
  // libseccomp cannot make notify the default: every call, the listener's own included, would wait on it.
  if (defaultAction === "SCMP_ACT_NOTIFY") throw seccomp.at("defaultAction").error("cannot be SCMP_ACT_NOTIFY");
  seccomp.at("defaultErrnoRet").optional((node) => {
    node.integer("uint32");
    if (!SECCOMP_ERRNO_ACTIONS.includes(defaultAction)) throw node.error(`is set, but defaultAction ${defaultAction} returns no errno (only ${SECCOMP_ERRNO_ACTIONS.join(" and ")} do)`);
  });
  seccomp.at("architectures").optional((node) => node.array().forEach((arch) => arch.oneOf(SECCOMP_ARCHES, "libseccomp's architectures")));
  seccomp.at("flags").optional((node) => node.array().forEach((flag) => flag.oneOf(SECCOMP_FLAGS)));
  const listenerPath = seccomp.at("listenerPath").optional((node) => node.absolutePath());
  seccomp.at("listenerMetadata").optional((node) => {
    node.string();
    if (listenerPath === undefined) throw node.error("must not be set without listenerPath");
  });
  seccomp.at("syscalls").optional((syscalls) =>
    syscalls.array().forEach((rule) => {
      rule.object();
      const names = rule.at("names");
      if (!Array.isArray(names.value) || names.value.length === 0) throw names.error("must be a non-empty array of system call names");
      names.array().forEach((name) => {
        if (!/^[a-z0-9_]+$/.test(name.string())) throw name.error(`must be a system call name, got ${describe(name.value)}`);
      });
      if (!rule.at("action").present) throw rule.at("action").error("is required");
      const action = rule.at("action").oneOf(SECCOMP_ACTIONS);
      rule.at("errnoRet").optional((node) => {
        node.integer("uint32");
        if (!SECCOMP_ERRNO_ACTIONS.includes(action)) throw node.error(`is set, but action ${action} returns no errno (only ${SECCOMP_ERRNO_ACTIONS.join(" and ")} do)`);
      });
      rule.at("args").optional((args) =>
        args.array().forEach((arg) => {
          arg.object();
          for (const key of ["index", "value", "op"]) {
            if (!arg.at(key).present) throw arg.at(key).error("is required");
          }
          arg.at("index").integer("uint32", { max: SYSCALL_ARGS_MAX - 1 });
          arg.at("value").integer("uint64");
          arg.at("valueTwo").optional((node) => node.integer("uint64"));
          arg.at("op").oneOf(SECCOMP_OPS);
        }),
      );
    }),
  );
}
