// `moat node install` and `moat node uninstall` (issue 12 item 5): what the DaemonSet in
// deploy/ runs on every Kubernetes node, and what an operator can run by hand. Idempotent:
//   1. containerd's config.toml is read and checked first (containerd-config-edit.ts), so that
//      a file moat cannot use stops everything before anything is written;
//   2. moat's files are copied from the image (--source) into a release directory under
//      --install-dir, named by a hash of their contents, and `current` points to it (a new
//      release never overwrites files that running sandboxes execute);
//   3. the shim goes on the PATH as `moat install` puts it (linkShim), pointing at `current`;
//   4. the missing runtime tables are appended to config.toml, and containerd is restarted only
//      when the file changed (--restart-command);
//   5. the node gets the label the RuntimeClasses select (--node-name, with kubectl).
// What it did is recorded in <install-dir>/node-install.json; uninstall undoes exactly that,
// and nothing else: what was there before (a runtime table, a link, a label) stays.
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { chmod, chown, copyFile, lstat, mkdir, readdir, readFile, readlink, realpath, rename, rm, rmdir, stat, symlink, writeFile } from "node:fs/promises";
import { dirname, join, relative } from "node:path";
import { promisify } from "node:util";
import { CleanupStack } from "../../shared/cleanup.js";
import { describeCause, MoatError } from "../../shared/errors.js";
import { isPlainObject } from "../../shared/json-object.js";
import { Code } from "../../shared/ttrpc/index.js";
import { packageRoot } from "../config/index.js";
import { addRuntimes, NODE_RUNTIME_TYPES, removeBlock, type NodeRuntimeName } from "./containerd-config-edit.js";
import { KATA_SHIM_NAME, linkShim, SHIM_NAME } from "./install.js";

const run = promisify(execFile);

/** The node label the installer sets and the RuntimeClasses' nodeSelector asks for (deploy/runtimeclass.yaml). */
export const NODE_LABEL = "moat.io/runtime";
export const NODE_LABEL_VALUE = "true";
export const STATE_FILE = "node-install.json";
/** What a release holds: what moatd, the shim and the CLI need at run time (dist/guest and dist/images are links into the build cache, copied as files). */
const RELEASE_PARTS = ["package.json", "bin", "dist/bin", "dist/bundle", "dist/guest", "dist/images"];

export interface NodeInstallOptions {
  source?: string;
  installDir: string;
  prefix: string;
  containerdConfig: string;
  runtimes: string;
  restartCommand: string;
  nodeName?: string;
  kubectl: string;
}

export interface NodeUninstallOptions {
  installDir: string;
  restartCommand: string;
  kubectl: string;
}

/** node-install.json: each thing one of the installs made, so that uninstall removes only those. */
interface NodeState {
  installDirCreated: boolean;
  /** The --prefix directory, when an install made it for the shim's links. */
  prefixCreated: string | undefined;
  releases: string[];
  /** The `current` link, when an install made it (it is repointed by later installs, removed by uninstall). */
  current: string | undefined;
  links: Array<{ path: string; target: string }>;
  containerd: { path: string; created: boolean; block: string } | undefined;
  label: { node: string; key: string } | undefined;
  /** config.toml changed and containerd has not been restarted since: the next run restarts it. */
  restartPending: boolean;
}

export async function nodeInstallCommand(options: NodeInstallOptions): Promise<void> {
  const names = parseRuntimes(options.runtimes);
  const configPath = options.containerdConfig;
  const original = await readFile(configPath, "utf8").catch((error: NodeJS.ErrnoException) => {
    if (error.code === "ENOENT") return undefined;
    throw new MoatError("MOAT_NODE_CONFIG_INVALID", `${configPath}: cannot read containerd's configuration`, { cause: error, status: Code.FAILED_PRECONDITION });
  });
  const edit = addRuntimes(configPath, original, names); // (1) throws before anything is written
  const statePath = join(options.installDir, STATE_FILE);
  const state = await readState(statePath);
  if (edit.block !== undefined && state.containerd !== undefined) {
    throw new MoatError("MOAT_NODE_UNINSTALL", `${configPath}: moat's runtimes are missing although ${statePath} records a block moat added to ${state.containerd.path}`, {
      hint: "run `moat node uninstall` first (or remove the state file if the configuration was replaced)",
      status: Code.FAILED_PRECONDITION,
    });
  }
  const cleanup = new CleanupStack();
  try {
    if (!existsSync(options.installDir)) {
      await mkdir(options.installDir, { recursive: true });
      state.installDirCreated = true;
      cleanup.push(`remove ${options.installDir}`, () => rm(options.installDir, { recursive: true, force: true }));
    }
    const current = await installRelease(options.source ?? packageRoot(), options.installDir, state, cleanup); // (2)
    const shimNames = names.map((name) => (name === "moat" ? SHIM_NAME : KATA_SHIM_NAME));
    const shim = join(current, "dist", "bin", SHIM_NAME);
    if (!existsSync(options.prefix)) {
      await mkdir(options.prefix, { recursive: true });
      state.prefixCreated = options.prefix;
      cleanup.push(`remove ${options.prefix}`, () => rm(options.prefix, { recursive: true, force: true }));
    }
    for (const link of await linkShim(shim, options.prefix, shimNames)) { // (3)
      state.links.push({ path: link, target: shim });
      cleanup.push(`remove ${link}`, () => rm(link, { force: true }));
    }
    if (edit.block !== undefined) { // (4)
      await writeFileAtomic(configPath, edit.text);
      state.containerd = { path: configPath, created: original === undefined, block: edit.block };
      state.restartPending = true;
      cleanup.push(`restore ${configPath}`, () => (original === undefined ? rm(configPath, { force: true }) : writeFileAtomic(configPath, original)));
    }
    await writeState(statePath, state);
    cleanup.release();
  } catch (error) {
    const failures = await cleanup.unwind();
    if (failures.length > 0) throw new MoatError("MOAT_NODE_INSTALL", `moat node install: undoing a failed install also failed: ${failures.join("; ")}`, { cause: error, status: Code.INTERNAL });
    throw error;
  }
  process.stdout.write(
    `${configPath}: ${edit.added.length > 0 ? `added runtime ${edit.added.join(", ")}` : "unchanged"}${edit.present.length > 0 ? ` (already there: ${edit.present.join(", ")})` : ""}\n`,
  );
  // Only when the file changed, or an earlier run changed it and its restart failed.
  if (state.restartPending) await restartContainerd(options.restartCommand, statePath, state);
  const nodeName = options.nodeName ?? process.env.NODE_NAME;
  if (nodeName && state.label?.node !== nodeName) { // (5)
    // A label the node had before is the operator's: left alone now, and by uninstall.
    const jsonPath = `{.metadata.labels.${NODE_LABEL.replace(/\./g, "\\.")}}`;
    const existing = await kubectl(options.kubectl, ["get", "node", nodeName, "-o", `jsonpath=${jsonPath}`]);
    if (existing.trim() === NODE_LABEL_VALUE) {
      process.stdout.write(`node ${nodeName}: already labelled ${NODE_LABEL}=${NODE_LABEL_VALUE}\n`);
    } else {
      await kubectl(options.kubectl, ["label", "node", nodeName, `${NODE_LABEL}=${NODE_LABEL_VALUE}`, "--overwrite"]);
      state.label = { node: nodeName, key: NODE_LABEL };
      await writeState(statePath, state);
      process.stdout.write(`node ${nodeName}: labelled ${NODE_LABEL}=${NODE_LABEL_VALUE}\n`);
    }
  }
}

export async function nodeUninstallCommand(options: NodeUninstallOptions): Promise<void> {
  const statePath = join(options.installDir, STATE_FILE);
  if (!existsSync(statePath)) {
    process.stdout.write(`${statePath}: not there; nothing to undo\n`);
    return;
  }
  const state = await readState(statePath);
  if (state.label) {
    // Off first: the scheduler stops placing moat pods here before the runtime goes.
    await kubectl(options.kubectl, ["label", "node", state.label.node, `${state.label.key}-`]);
    process.stdout.write(`node ${state.label.node}: label ${state.label.key} removed\n`);
    state.label = undefined;
    await writeState(statePath, state);
  }
  if (state.containerd) {
    const { path, created, block } = state.containerd;
    const text = await readFile(path, "utf8").catch(() => undefined);
    if (text !== undefined) {
      const restored = removeBlock(path, text, block);
      if (created && restored === "version = 2\n") await rm(path, { force: true });
      else await writeFileAtomic(path, restored);
      process.stdout.write(`${path}: moat's runtimes removed\n`);
    }
    state.containerd = undefined;
    if (text !== undefined) state.restartPending = true;
    await writeState(statePath, state);
  }
  if (state.restartPending) await restartContainerd(options.restartCommand, statePath, state);
  for (const link of state.links) {
    // Only while it is still the link moat made: a file put there since is someone else's.
    const target = await readlink(link.path).catch(() => undefined);
    if (target === link.target) await rm(link.path, { force: true });
  }
  if (state.prefixCreated && (await readdir(state.prefixCreated).catch(() => ["?"])).length === 0) await rmdir(state.prefixCreated);
  if (state.current) await rm(state.current, { force: true });
  for (const release of state.releases) await rm(release, { recursive: true, force: true });
  await rm(statePath, { force: true });
  const releasesDir = join(options.installDir, "releases");
  if (existsSync(releasesDir) && (await readdir(releasesDir)).length === 0) await rmdir(releasesDir);
  if (state.installDirCreated && (await readdir(options.installDir)).length === 0) await rmdir(options.installDir);
  process.stdout.write(`${options.installDir}: moat's files removed\n`);
}

function parseRuntimes(text: string): NodeRuntimeName[] {
  const names = text.split(",").map((name) => name.trim()).filter((name) => name !== "");
  const known = Object.keys(NODE_RUNTIME_TYPES);
  for (const name of names) {
    if (!known.includes(name)) {
      throw new MoatError("MOAT_NODE_USAGE", `moat node install: --runtimes: ${JSON.stringify(name)} is not one of ${known.join(", ")}`, { status: Code.INVALID_ARGUMENT });
    }
  }
  if (names.length === 0) throw new MoatError("MOAT_NODE_USAGE", "moat node install: --runtimes: name at least one of moat, kata", { status: Code.INVALID_ARGUMENT });
  return names as NodeRuntimeName[]; // each checked against NODE_RUNTIME_TYPES' keys above
}

/** Copies moat's files into releases/<hash> (unless there already) and points `current` at it; returns the `current` path. */
async function installRelease(source: string, installDir: string, state: NodeState, cleanup: CleanupStack): Promise<string> {
  const entries: ReleaseEntry[] = [];
  for (const part of RELEASE_PARTS) {
    const path = join(source, part);
    if (!existsSync(path)) {
      throw new MoatError("MOAT_NODE_INSTALL", `moat node install: ${path} does not exist; the source is not a built moat`, {
        hint: "build it with `make build guest`, or point --source at an image's moat directory",
        status: Code.FAILED_PRECONDITION,
      });
    }
    entries.push(...(await walk(path, part, true)));
  }
  const hash = createHash("sha256");
  for (const entry of entries) {
    hash.update(`${entry.kind} ${entry.relativePath} ${entry.mode.toString(8)}\0`);
    if (entry.kind === "file") hash.update(await readFile(entry.path));
    if (entry.kind === "link") hash.update(entry.target);
  }
  const id = hash.digest("hex").slice(0, 16);
  const releases = join(installDir, "releases");
  const release = join(releases, id);
  if (!existsSync(release)) {
    const staging = join(releases, `.staging-${id}-${process.pid}`);
    cleanup.push(`remove ${staging}`, () => rm(staging, { recursive: true, force: true }));
    await mkdir(staging, { recursive: true });
    for (const entry of entries) {
      const to = join(staging, entry.relativePath);
      await mkdir(dirname(to), { recursive: true });
      if (entry.kind === "dir") await mkdir(to, { recursive: true, mode: entry.mode });
      else if (entry.kind === "link") await symlink(entry.target, to);
      else await copyFile(entry.path, to);
      if (entry.kind !== "link") await chmod(to, entry.mode);
    }
    await rename(staging, release);
    state.releases.push(release);
    cleanup.push(`remove ${release}`, () => rm(release, { recursive: true, force: true }));
  }
  const current = join(installDir, "current");
  const previous = await readlink(current).catch(() => undefined);
  if (previous !== relative(installDir, release)) {
    // A new link renamed over the old one: the shim's path never points nowhere.
    const staged = `${current}.${process.pid}`;
    await symlink(relative(installDir, release), staged);
    await rename(staged, current);
    if (previous === undefined) {
      state.current = current;
      cleanup.push(`remove ${current}`, () => rm(current, { force: true }));
    } else cleanup.push(`point ${current} back at ${previous}`, async () => {
      await symlink(previous, staged);
      await rename(staged, current);
    });
  }
  process.stdout.write(`${current} -> ${relative(installDir, release)}\n`);
  return current;
}

interface ReleaseEntry {
  kind: "dir" | "file" | "link";
  /** Where to read it (a followed link's target). */
  path: string;
  relativePath: string;
  mode: number;
  /** A link's target, for kind link. */
  target: string;
}

/**
 * What a release holds under `relativePath`, in a stable order. The build puts links into its
 * cache at the top of the tree (dist/guest/vmlinux, dist/images/busybox/rootfs): those are
 * followed. Below a followed link, links are kept as links (the busybox image's applets), and
 * files that are neither files, links nor directories are refused.
 */
async function walk(path: string, relativePath: string, follow: boolean): Promise<ReleaseEntry[]> {
  let info = await lstat(path);
  let from = path;
  let followBelow = follow;
  if (info.isSymbolicLink()) {
    if (!follow) return [{ kind: "link", path, relativePath, mode: 0o777, target: await readlink(path) }];
    from = await realpath(path);
    info = await stat(from);
    followBelow = false;
  }
  if (info.isFile()) return [{ kind: "file", path: from, relativePath, mode: info.mode & 0o7777, target: "" }];
  if (!info.isDirectory()) {
    throw new MoatError("MOAT_NODE_INSTALL", `moat node install: ${path}: neither a file, a directory nor a link; a release holds no other kind`, { status: Code.FAILED_PRECONDITION });
  }
  const entries: ReleaseEntry[] = [{ kind: "dir", path: from, relativePath, mode: info.mode & 0o7777, target: "" }];
  for (const name of (await readdir(from)).sort()) entries.push(...(await walk(join(from, name), join(relativePath, name), followBelow)));
  return entries;
}

/** Runs the restart command; the state's restartPending, set when config.toml changed, is cleared only once it succeeded. */
async function restartContainerd(command: string, statePath: string, state: NodeState): Promise<void> {
  try {
    const { stdout, stderr } = await run("/bin/sh", ["-c", command]);
    process.stdout.write(`containerd restarted (${command})\n${stdout}${stderr}`);
    state.restartPending = false;
    await writeState(statePath, state);
  } catch (error) {
    const detail = lastLine(error);
    throw new MoatError("MOAT_NODE_RESTART", `moat node: restarting containerd with \`${command}\` failed: ${detail}`, {
      hint: "the configuration is written and recorded; the next run restarts containerd again (or restart it yourself)",
      status: Code.UNAVAILABLE,
    });
  }
}

/** Runs kubectl; its stdout. */
async function kubectl(command: string, args: string[]): Promise<string> {
  try {
    return (await run(command, args)).stdout;
  } catch (error) {
    const detail = lastLine(error);
    throw new MoatError("MOAT_NODE_LABEL", `moat node: \`${command} ${args.join(" ")}\` failed: ${detail}`, {
      hint: "the DaemonSet's service account needs get and patch on nodes (deploy/daemonset.yaml); outside a pod, kubectl needs a kubeconfig",
      status: Code.UNAVAILABLE,
    });
  }
}

/** A failed command's last line on stderr (kubectl's is its summary; the lines above repeat it), else the error's message. */
function lastLine(error: unknown): string {
  const stderr = error instanceof Error && "stderr" in error ? String(error.stderr).trim() : "";
  return stderr.split("\n").pop() || describeCause(error);
}

async function readState(path: string): Promise<NodeState> {
  const text = await readFile(path, "utf8").catch(() => undefined);
  const empty: NodeState = { installDirCreated: false, prefixCreated: undefined, releases: [], current: undefined, links: [], containerd: undefined, label: undefined, restartPending: false };
  if (text === undefined) return empty;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new MoatError("MOAT_NODE_UNINSTALL", `${path}: not valid JSON`, { cause: error, hint: "the install state was damaged: undo by hand (docs/kubernetes.md lists what the installer does)", status: Code.DATA_LOSS });
  }
  if (!isPlainObject(value) || !Array.isArray(value.releases) || !Array.isArray(value.links)) {
    throw new MoatError("MOAT_NODE_UNINSTALL", `${path}: not an install state moat wrote`, { status: Code.DATA_LOSS });
  }
  return { ...empty, ...(value as Partial<NodeState>) }; // moat's own file, its shape checked above
}

async function writeState(path: string, state: NodeState): Promise<void> {
  await writeFileAtomic(path, JSON.stringify(state, null, 2) + "\n");
}

/**
 * Writes through a temporary file and a rename, so that containerd never reads half a file;
 * keeps an existing file's mode and owner, and writes through a symlink to the file it names.
 */
async function writeFileAtomic(path: string, text: string): Promise<void> {
  const target = await realpath(path).catch(() => path);
  const before = await stat(target).catch(() => undefined);
  await mkdir(dirname(target), { recursive: true });
  const temporary = `${target}.moat-${process.pid}`;
  await writeFile(temporary, text, { mode: before ? before.mode & 0o7777 : 0o644 });
  if (before) {
    await chmod(temporary, before.mode & 0o7777); // writeFile's mode is filtered by the umask
    await chown(temporary, before.uid, before.gid);
  }
  await rename(temporary, target);
}
