// Reads configuration.toml into a validated Config. Where a value is wrong, the error names
// the file, the key path and the valid range. Keys moat does not know are ignored.
//
// A Kata Containers configuration (told by its [agent.kata] table, which every Kata file has)
// is read for the keys that mean the same thing in moat: the VM's size, debug, machine type,
// shared file system, templates, the agent's dial timeout. Its paths are Kata's (its guest
// kernel and image carry Kata's agent, not moat's; its virtiofsd is another program), so they
// are not taken. That is what makes Kata's file, or a CRI ConfigPath pointing at it, work
// with moat unchanged.
import { existsSync, readFileSync } from "node:fs";
import { isAbsolute, join } from "node:path";
import { parse, TomlError } from "smol-toml";
import { MoatError } from "../../shared/errors.js";
import { Code } from "../../shared/ttrpc/index.js";
import { SOCKET_PATH_MAX_BYTES, SOCKET_ROOT_MAX_BYTES, type VmmUser } from "../hypervisor/index.js";
import type { Config } from "./config.js";
import { packageRoot } from "./package-root.js";

/**
 * Sandboxes' sockets, apart from their state directories (hypervisor/socket-dir.ts): short and
 * fixed, whatever state root (Docker's is under its exec root) and id a caller chooses.
 */
export const DEFAULT_SOCKET_ROOT = "/run/moat-sockets";
export const SYSTEM_CONFIG_PATH = "/etc/moat/configuration.toml";
/** Where Kata keeps its configuration, read when moat has none of its own. */
export const KATA_CONFIG_PATHS = ["/etc/kata-containers/configuration.toml", "/usr/share/defaults/kata-containers/configuration.toml"];

/** The keys of a Kata file moat takes, with moat's name where it differs, and the values each may have in moat. */
const KATA_KEYS: Array<{ key: string; moatKey?: string; values?: readonly unknown[] }> = [
  { key: "hypervisor.qemu.default_vcpus" },
  { key: "hypervisor.qemu.default_memory" },
  { key: "hypervisor.qemu.default_maxvcpus" },
  { key: "hypervisor.qemu.default_maxmemory" },
  { key: "hypervisor.qemu.enable_debug" },
  { key: "hypervisor.qemu.machine_type", values: ["microvm", "q35"] },
  { key: "hypervisor.qemu.shared_fs", values: ["virtio-fs", "virtio-9p"] },
  { key: "hypervisor.qemu.virtio_fs_cache", values: ["never", "auto", "always"] },
  { key: "agent.kata.dial_timeout", moatKey: "agent.moat.dial_timeout" },
  { key: "factory.enable_template" },
  { key: "factory.vm_cache_number" },
];

/**
 * moat's own keys, which no Kata file has: a file with [agent.kata] that holds one of them was
 * written for moat, and reading it as Kata's would drop them silently (a state root ignored
 * puts sandboxes under /run/moat), so it is refused instead.
 */
const MOAT_ONLY_KEYS = ["agent.moat", "runtime.state_root", "runtime.socket_root", "hypervisor.qemu.virtfs_server", "hypervisor.qemu.vmm_user"];

/** The warm pool's largest size: each VM costs tens of MiB even idle, and the pool refills one at a time. */
const MAX_VM_CACHE_NUMBER = 64;

type Table = Record<string, unknown>;

/** The built-in configuration: what a fresh `make` gives, before any file is read. */
export function defaultConfig(): Config {
  const guest = join(packageRoot(), "dist", "guest");
  return {
    source: undefined,
    qemu: {
      path: "/usr/bin/qemu-system-x86_64",
      kernel: join(guest, "vmlinux"),
      image: join(guest, "rootfs.erofs"),
      initrd: undefined,
      machineType: "microvm",
      defaultVcpus: 1,
      defaultMemoryMiB: 512,
      defaultMaxVcpus: 0,
      defaultMaxMemoryMiB: 0,
      kernelParams: [],
      enableAnnotations: [],
      enableDebug: false,
      sharedFs: "virtio-9p",
      virtfsServer: "qemu",
      virtioFsDaemon: "/usr/lib/qemu/virtiofsd",
      virtioFsCache: "auto",
      vmmUser: undefined,
    },
    agent: { dialTimeoutMs: 30_000 },
    runtime: { stateRoot: "/run/moat", socketRoot: DEFAULT_SOCKET_ROOT },
    factory: { enableTemplate: true, templatePath: undefined, vmCacheNumber: 0, vmCacheNetworked: 0 },
  };
}

/**
 * Loads the configuration: `explicitPath` if given (it must exist), else MOAT_CONFIG, else
 * /etc/moat/configuration.toml if it exists, else Kata's if it exists, else the built-in defaults.
 */
export function loadConfig(explicitPath?: string, systemPaths: string[] = [SYSTEM_CONFIG_PATH, ...KATA_CONFIG_PATHS]): Config {
  const path = explicitPath ?? process.env.MOAT_CONFIG ?? systemPaths.find((candidate) => existsSync(candidate));
  if (path === undefined) return defaultConfig();
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    throw new MoatError("MOAT_CONFIG_INVALID", `${path}: cannot read the configuration`, { cause: error, status: Code.FAILED_PRECONDITION });
  }
  return parseConfig(text, path);
}

/**
 * A `vmm_user` value: "UID:GID", or a user name looked up in `passwd` (/etc/passwd's text)
 * with its primary group; undefined if it is neither or names root's uid or gid.
 */
export function parseVmmUser(value: string, passwd: string): VmmUser | undefined {
  let found: VmmUser | undefined;
  const numeric = /^(\d{1,10}):(\d{1,10})$/.exec(value);
  if (numeric) found = { uid: Number(numeric[1]), gid: Number(numeric[2]) };
  else {
    for (const line of passwd.split("\n")) {
      const [name, , uid, gid] = line.split(":");
      if (name === value && uid !== undefined && gid !== undefined && /^\d+$/.test(uid) && /^\d+$/.test(gid)) found = { uid: Number(uid), gid: Number(gid) };
    }
  }
  if (!found || found.uid === 0 || found.gid === 0 || found.uid > 0x7fffffff || found.gid > 0x7fffffff) return undefined;
  return found;
}

function readPasswd(): string {
  try {
    return readFileSync("/etc/passwd", "utf8");
  } catch {
    return "";
  }
}

/** Parses configuration text; `file` names it in errors. */
export function parseConfig(text: string, file: string): Config {
  let document: Table;
  try {
    document = parse(text) as Table; // smol-toml returns a plain table for a document
  } catch (error) {
    const detail = error instanceof TomlError ? error.message.split("\n")[0] : String(error);
    throw new MoatError("MOAT_CONFIG_INVALID", `${file}: not valid TOML: ${detail}`, { status: Code.INVALID_ARGUMENT });
  }
  if (isKataConfiguration(document)) {
    const mixed = MOAT_ONLY_KEYS.find((key) => valueAt(document, key) !== undefined);
    if (mixed !== undefined) {
      throw new MoatError("MOAT_CONFIG_INVALID", `${file}: ${mixed}: a moat key in a file read as Kata's (it has an [agent.kata] table), where it would be ignored; a moat file has [agent.moat] instead of [agent.kata]`, { status: Code.INVALID_ARGUMENT });
    }
    document = kataKeys(document);
  }
  const config = defaultConfig();
  config.source = file;
  const read = new Reader(file);

  const qemu = read.table(document, ["hypervisor", "qemu"]);
  config.qemu.path = read.absolutePath(qemu, "hypervisor.qemu.path") ?? config.qemu.path;
  config.qemu.kernel = read.absolutePath(qemu, "hypervisor.qemu.kernel") ?? config.qemu.kernel;
  const image = read.absolutePath(qemu, "hypervisor.qemu.image");
  const initrd = read.absolutePath(qemu, "hypervisor.qemu.initrd");
  if (image !== undefined && initrd !== undefined) {
    throw read.invalid("hypervisor.qemu", "image and initrd are both set; set one of them");
  }
  if (initrd !== undefined) [config.qemu.image, config.qemu.initrd] = [undefined, initrd];
  if (image !== undefined) [config.qemu.image, config.qemu.initrd] = [image, undefined];
  config.qemu.machineType = read.oneOf(qemu, "hypervisor.qemu.machine_type", ["microvm", "q35"] as const) ?? config.qemu.machineType;
  config.qemu.defaultVcpus = read.integer(qemu, "hypervisor.qemu.default_vcpus", 1, 64, "vCPUs") ?? config.qemu.defaultVcpus;
  config.qemu.defaultMemoryMiB = read.integer(qemu, "hypervisor.qemu.default_memory", 128, 1024 * 1024, "MiB") ?? config.qemu.defaultMemoryMiB;
  // Kata's names and meaning: the ceiling a container's limits may raise its VM to; 0 is the host's size.
  config.qemu.defaultMaxVcpus = read.integer(qemu, "hypervisor.qemu.default_maxvcpus", 0, 64, "vCPUs; 0 is the host's CPU count") ?? config.qemu.defaultMaxVcpus;
  config.qemu.defaultMaxMemoryMiB = read.integer(qemu, "hypervisor.qemu.default_maxmemory", 0, 1024 * 1024, "MiB; 0 is the host's memory") ?? config.qemu.defaultMaxMemoryMiB;
  if (config.qemu.defaultMaxVcpus > 0 && config.qemu.defaultMaxVcpus < config.qemu.defaultVcpus) {
    throw read.invalid("hypervisor.qemu.default_maxvcpus", `must be 0 or at least default_vcpus (${config.qemu.defaultVcpus}), got ${config.qemu.defaultMaxVcpus}`);
  }
  if (config.qemu.defaultMaxMemoryMiB > 0 && config.qemu.defaultMaxMemoryMiB < config.qemu.defaultMemoryMiB) {
    throw read.invalid("hypervisor.qemu.default_maxmemory", `must be 0 or at least default_memory (${config.qemu.defaultMemoryMiB} MiB), got ${config.qemu.defaultMaxMemoryMiB}`);
  }
  const params = read.string(qemu, "hypervisor.qemu.kernel_params");
  if (params !== undefined) config.qemu.kernelParams = params.split(/\s+/).filter((param) => param.length > 0);
  config.qemu.enableDebug = read.boolean(qemu, "hypervisor.qemu.enable_debug") ?? config.qemu.enableDebug;
  config.qemu.enableAnnotations = read.patterns(qemu, "hypervisor.qemu.enable_annotations") ?? config.qemu.enableAnnotations;
  config.qemu.sharedFs = read.oneOf(qemu, "hypervisor.qemu.shared_fs", ["virtio-fs", "virtio-9p"] as const) ?? config.qemu.sharedFs;
  config.qemu.virtfsServer = read.oneOf(qemu, "hypervisor.qemu.virtfs_server", ["qemu", "proxy"] as const) ?? config.qemu.virtfsServer;
  config.qemu.virtioFsDaemon = read.absolutePath(qemu, "hypervisor.qemu.virtio_fs_daemon") ?? config.qemu.virtioFsDaemon;
  config.qemu.virtioFsCache = read.oneOf(qemu, "hypervisor.qemu.virtio_fs_cache", ["never", "auto", "always"] as const) ?? config.qemu.virtioFsCache;
  const vmmUser = read.string(qemu, "hypervisor.qemu.vmm_user");
  if (vmmUser !== undefined && vmmUser !== "") {
    config.qemu.vmmUser = parseVmmUser(vmmUser, readPasswd());
    if (config.qemu.vmmUser === undefined) throw read.invalid("hypervisor.qemu.vmm_user", `must be a user name in /etc/passwd or UID:GID (neither 0), got "${vmmUser}"`);
  }

  const agent = read.table(document, ["agent", "moat"]);
  const dialTimeout = read.integer(agent, "agent.moat.dial_timeout", 1, 600, "seconds");
  if (dialTimeout !== undefined) config.agent.dialTimeoutMs = dialTimeout * 1000;

  const runtime = read.table(document, ["runtime"]);
  config.runtime.stateRoot = read.absolutePath(runtime, "runtime.state_root") ?? config.runtime.stateRoot;
  const socketRoot = read.absolutePath(runtime, "runtime.socket_root");
  if (socketRoot !== undefined && Buffer.byteLength(socketRoot) > SOCKET_ROOT_MAX_BYTES) {
    throw read.invalid("runtime.socket_root", `must be at most ${SOCKET_ROOT_MAX_BYTES} bytes long (unix socket paths allow ${SOCKET_PATH_MAX_BYTES}), got ${Buffer.byteLength(socketRoot)}`);
  }
  config.runtime.socketRoot = socketRoot ?? config.runtime.socketRoot;

  const factory = read.table(document, ["factory"]);
  config.factory.enableTemplate = read.boolean(factory, "factory.enable_template") ?? config.factory.enableTemplate;
  config.factory.templatePath = read.absolutePath(factory, "factory.template_path") ?? config.factory.templatePath;
  config.factory.vmCacheNumber = read.integer(factory, "factory.vm_cache_number", 0, MAX_VM_CACHE_NUMBER, "VMs") ?? config.factory.vmCacheNumber;
  config.factory.vmCacheNetworked = read.integer(factory, "factory.vm_cache_networked", 0, MAX_VM_CACHE_NUMBER, "VMs") ?? config.factory.vmCacheNetworked;
  for (const [key, count] of [["factory.vm_cache_number", config.factory.vmCacheNumber], ["factory.vm_cache_networked", config.factory.vmCacheNetworked]] as const) {
    if (count > 0 && !config.factory.enableTemplate) {
      throw read.invalid(key, "needs enable_template = true: the warm pool's VMs are restored from the template");
    }
    if (count > 0 && config.qemu.sharedFs === "virtio-fs") {
      throw read.invalid(key, 'needs shared_fs = "virtio-9p": virtio-fs sandboxes cannot be restored from a template');
    }
  }
  return config;
}

function isKataConfiguration(document: Table): boolean {
  const agent = document.agent;
  return typeof agent === "object" && agent !== null && "kata" in agent;
}

/**
 * The part of a Kata document moat reads, under moat's key names. A value moat has no
 * equivalent for (shared_fs = "virtio-fs-nydus", virtio_fs_cache = "metadata") is left out, so
 * moat's default applies, rather than refusing Kata's own file.
 */
function kataKeys(document: Table): Table {
  const taken: Table = {};
  for (const { key, moatKey = key, values } of KATA_KEYS) {
    const value = valueAt(document, key);
    if (value === undefined || (values && !values.includes(value))) continue;
    const target = moatKey.split(".");
    let into = taken;
    for (const name of target.slice(0, -1)) into = (into[name] ??= {}) as Table;
    into[target[target.length - 1]!] = value; // a key has at least one part
  }
  return taken;
}

/** The value at a dotted key path, or undefined where a part is missing or not a table. */
function valueAt(document: Table, key: string): unknown {
  let value: unknown = document;
  for (const name of key.split(".")) value = typeof value === "object" && value !== null ? (value as Table)[name] : undefined;
  return value;
}

/** Typed reads of one key each, with errors that name the file and the key path. */
class Reader {
  constructor(private readonly file: string) {}

  invalid(key: string, what: string): MoatError {
    return new MoatError("MOAT_CONFIG_INVALID", `${this.file}: ${key}: ${what}`, { status: Code.INVALID_ARGUMENT });
  }

  table(document: Table, path: string[]): Table {
    let current: unknown = document;
    for (const [index, name] of path.entries()) {
      if (typeof current !== "object" || current === null) return {};
      current = (current as Table)[name]; // checked to be an object just above
      if (current === undefined) return {};
      if (typeof current !== "object" || Array.isArray(current)) {
        throw this.invalid(path.slice(0, index + 1).join("."), "must be a table");
      }
    }
    return current as Table; // every step was checked to be a table
  }

  string(table: Table, key: string): string | undefined {
    const value = table[lastPart(key)];
    if (value === undefined) return undefined;
    if (typeof value !== "string") throw this.invalid(key, `must be a string, got ${describe(value)}`);
    return value;
  }

  /** A string that must be one of `values` (an enumeration such as machine_type). */
  oneOf<T extends string>(table: Table, key: string, values: readonly T[]): T | undefined {
    const value = this.string(table, key);
    if (value === undefined) return undefined;
    const valid: readonly string[] = values;
    if (!valid.includes(value)) throw this.invalid(key, `must be ${values.map((each) => `"${each}"`).join(", ").replace(/, ([^,]*)$/, " or $1")}, got "${value}"`);
    return value as T; // one of values: checked just above
  }

  absolutePath(table: Table, key: string): string | undefined {
    const value = this.string(table, key);
    if (value !== undefined && !isAbsolute(value)) throw this.invalid(key, `must be an absolute path, got "${value}"`);
    return value;
  }

  integer(table: Table, key: string, min: number, max: number, unit: string): number | undefined {
    const value = table[lastPart(key)];
    if (value === undefined) return undefined;
    const number = typeof value === "bigint" ? Number(value) : value;
    if (typeof number !== "number" || !Number.isInteger(number) || number < min || number > max) {
      throw this.invalid(key, `must be an integer from ${min} to ${max} (${unit}), got ${describe(value)}`);
    }
    return number;
  }

  /** A list of names or regular expressions (Kata's enable_annotations), each checked to compile. */
  patterns(table: Table, key: string): string[] | undefined {
    const value = table[lastPart(key)];
    if (value === undefined) return undefined;
    if (!Array.isArray(value) || !value.every((entry) => typeof entry === "string" && entry.length > 0 && entry.length <= 256)) {
      throw this.invalid(key, `must be a list of names or regular expressions (strings of 1 to 256 characters), got ${describe(value)}`);
    }
    for (const entry of value as string[]) {
      try {
        new RegExp(`^(?:${entry})$`);
      } catch {
        throw this.invalid(key, `"${entry}" is not a regular expression`);
      }
    }
    return value as string[]; // every entry checked to be a string just above
  }

  boolean(table: Table, key: string): boolean | undefined {
    const value = table[lastPart(key)];
    if (value === undefined) return undefined;
    if (typeof value !== "boolean") throw this.invalid(key, `must be true or false, got ${describe(value)}`);
    return value;
  }
}

function lastPart(key: string): string {
  return key.slice(key.lastIndexOf(".") + 1);
}

function describe(value: unknown): string {
  return typeof value === "string" ? `"${value}"` : typeof value === "object" ? JSON.stringify(value) : String(value);
}
