// VM templates (docs/templates.md): a VM booted once to agent-ready with its RAM in a file,
// paused, and its device state saved; new sandboxes restore from it with that RAM mapped
// copy-on-write, so they start in a fraction of a boot and share the pages they never write.
//
// A template is keyed by everything that shapes the saved guest (kernel, guest image, QEMU,
// machine, size, kernel parameters, accelerator): change any of it and the next sandbox builds
// a new template. Each one is a directory <template path>/<key>/ holding `memory`, `state`
// and `template.json`. Sandboxes of another size use a template of their size class, built on
// first use; at most MAX_TEMPLATES are kept, the least recently used go first.
import { createHash, randomBytes } from "node:crypto";
import { mkdir, readdir, readFile, rename, rm, stat, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { CleanupStack } from "../../shared/cleanup.js";
import { settleWithin } from "../../shared/deadline.js";
import { MoatError } from "../../shared/errors.js";
import { tracer } from "../../shared/trace.js";
import { Code } from "../../shared/ttrpc/index.js";
import { MOAT_VERSION } from "../../shared/version.js";
import { vmmLaunch, type Config } from "../config/index.js";
import { exitedError, killRunningQemu, loadState, makeSocketDir, processGone, QemuVm, removeSocketDir, saveState, vcpuReport, vmPaths, type VmSpec } from "../hypervisor/index.js";

const trace = tracer("factory");

/**
 * The version of the devices qemuArgs gives a VM, in every template's key: a change to a
 * device's properties that the saved state depends on (a feature bit such as a NIC's
 * guest_announce) must not load an old template's state into a new device. 2: NICs have
 * guest_announce=off. 3: NICs have a tap with a virtio-net header (offloads) while a template
 * is built, as its clones do.
 */
const DEVICE_LAYOUT = 3;

/**
 * Templates kept at once (one per size class in use, and the default's): each costs its
 * guest's touched memory on disk (tmpfs under /run: RAM), ~100-200 MiB here.
 */
export const MAX_TEMPLATES = 4;
const QEMU_START_TIMEOUT_MS = 10_000;
const SAVE_TIMEOUT_MS = 30_000;
const RESTORE_TIMEOUT_MS = 30_000;
const BUILDER_PID_FILE = "builder.pid";
/** The agent's "serving" line in vm.log: the guest is ready to be saved. */
const AGENT_READY_MARK = "serving on";
const READY_POLL_MS = 20;
/** After a failed restore, how long to wait for QEMU's exit to be seen before blaming the restore. */
const EXIT_SETTLE_MS = 1000;

/** What a template is made of: a VmSpec without the per-VM parts (id, paths, shares, RAM file). */
export type TemplateBase = Omit<VmSpec, "id" | "paths" | "shares" | "memoryFile" | "incoming" | "network">;

export interface Template {
  key: string;
  /** The key of everything but the size: templates of one family differ only in vCPUs and memory. */
  family: string;
  dir: string;
  memoryPath: string;
  statePath: string;
  base: TemplateBase;
  /** ISO time the template was saved. */
  created: string;
}

export function templateRoot(config: Config): string {
  // Not a valid sandbox id, so that no container's state directory can take its name.
  return config.factory.templatePath ?? join(config.runtime.stateRoot, ".templates");
}

/**
 * Memory sizes share templates by class: a sandbox's memory is rounded up to a multiple of
 * 256 MiB up to 1 GiB, and of 1 GiB above (600 → 768, 1000 → 1024, 1500 → 2048), so that near
 * sizes restore from one template instead of each building its own. The guest gets the
 * rounded size.
 */
export function memorySizeClassMiB(memoryMiB: number): number {
  const step = memoryMiB <= 1024 ? 256 : 1024;
  return Math.ceil(memoryMiB / step) * step;
}

/** The key of the template for `base` and this QEMU: a hash of every input, file versions included. */
export async function templateKey(base: TemplateBase, qemuPath: string): Promise<string> {
  return (await templateKeys(base, qemuPath)).key;
}

async function templateKeys(base: TemplateBase, qemuPath: string): Promise<{ key: string; family: string }> {
  const version = async (path: string) => {
    const info = await stat(path);
    return `${path}:${info.size}:${info.mtimeMs}`;
  };
  // The NICs, like the size, tell templates of one family apart: a sandbox with no network and
  // one with two interfaces use templates made from the same inputs, and neither removes the other.
  const { vcpus, memoryMiB, nics = [], ...rest } = base;
  const inputs = { base: rest, moat: MOAT_VERSION, devices: DEVICE_LAYOUT, kernel: await version(base.kernelPath), rootfs: await version(base.rootfs.path), qemu: await version(qemuPath) };
  const hash = (value: unknown) => createHash("sha256").update(JSON.stringify(value)).digest("hex").slice(0, 16);
  return { key: hash({ inputs, vcpus, memoryMiB, ...(nics.length > 0 ? { nics } : {}) }), family: hash(inputs) };
}

/**
 * Template builds that failed in this process, by key: a daemon does not pay for a failing
 * build again with every sandbox (they boot cold); a new daemon, or `moat factory init`, tries again.
 */
const failedBuilds = new Map<string, Error>();

/** The template for `base`, built first if there is none yet. */
export async function ensureTemplate(config: Config, base: TemplateBase): Promise<Template> {
  const root = templateRoot(config);
  const { key, family } = await templateKeys(base, config.qemu.path);
  const existing = await readTemplate(join(root, key));
  if (existing) {
    // Its last use, which decides what is removed first when there are too many.
    const now = new Date();
    await utimes(join(existing.dir, "template.json"), now, now).catch(() => undefined);
    return existing;
  }
  const failed = failedBuilds.get(`${root}/${key}`);
  if (failed) throw failed;
  return buildTemplate(config, base, key, family).catch((error: Error) => {
    failedBuilds.set(`${root}/${key}`, error);
    throw error;
  });
}

async function readTemplate(dir: string): Promise<Template | undefined> {
  const text = await readFile(join(dir, "template.json"), "utf8").catch(() => undefined);
  return text === undefined ? undefined : (JSON.parse(text) as Template); // written by buildTemplate below
}

/**
 * Boots the template VM, waits for its agent to serve, saves it, and moves it into place.
 * Two builds at once both finish; the second to arrive keeps the first's. Templates of
 * another family are removed: they were made from inputs that have changed since (VMs
 * restored from them keep their mapping of the removed files); so are the least recently
 * used beyond MAX_TEMPLATES.
 */
async function buildTemplate(config: Config, base: TemplateBase, key: string, family: string): Promise<Template> {
  const root = templateRoot(config);
  const where = `template ${key}`;
  const dir = join(root, `${key}.building-${randomBytes(4).toString("hex")}`);
  const cleanup = new CleanupStack();
  const startedAt = performance.now();
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    cleanup.push(`remove ${dir}`, () => rm(dir, { recursive: true, force: true }));
    // Who builds: a builder that dies leaves its QEMU running (it has its own session), and
    // removeAbandonedBuilds tells an abandoned build from a live one by this pid.
    await writeFile(join(dir, BUILDER_PID_FILE), String(process.pid));
    const memoryPath = join(dir, "memory");
    const spec: VmSpec = { ...base, id: `template-${key}`, paths: vmPaths(dir, config.runtime.socketRoot), shares: [], memoryFile: { path: memoryPath, shared: true } };
    cleanup.push(`remove ${spec.paths.socketDir}`, () => removeSocketDir(spec.paths.socketDir));
    await makeSocketDir(spec.paths, where);
    // The 9p device's export: empty in the template, as it is in a clone until its shares come.
    await mkdir(spec.paths.sharesDir);
    const vm = await QemuVm.start({ ...vmmLaunch(config), qemuPath: config.qemu.path, spec, startTimeoutMs: QEMU_START_TIMEOUT_MS });
    cleanup.push(`kill QEMU ${vm.pid}`, () => vm.kill().then(() => undefined));
    await agentServing(vm, config.agent.dialTimeoutMs, where);
    const statePath = join(dir, "state");
    await saveState(vm.qmp, statePath, spec.paths.migrationSocket, SAVE_TIMEOUT_MS, where);
    await vm.kill();
    const final = join(root, key);
    const template: Template = { key, family, dir: final, memoryPath: join(final, "memory"), statePath: join(final, "state"), base, created: new Date().toISOString() };
    await writeFile(join(dir, "template.json"), JSON.stringify(template, null, 2) + "\n");
    for (const name of ["qemu.pid", "qemu.name", "shares", BUILDER_PID_FILE]) await rm(join(dir, name), { recursive: true, force: true });
    await removeSocketDir(spec.paths.socketDir);
    try {
      await rename(dir, final);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== "ENOTEMPTY" && code !== "EEXIST") throw error;
      trace(where, "another build finished first; keeping it");
      await cleanup.unwind();
      return (await readTemplate(final)) ?? template;
    }
    cleanup.release();
    await removeOthers(root, template);
    trace(where, `built in ${Math.round(performance.now() - startedAt)} ms`);
    return template;
  } catch (error) {
    await cleanup.unwind();
    throw new MoatError("MOAT_TEMPLATE_BUILD", `${where}: cannot build the VM template in ${root}`, {
      cause: error,
      hint: "[factory] enable_template = false boots every sandbox instead",
      status: error instanceof MoatError ? error.status : Code.INTERNAL,
    });
  }
}

/** Waits for the agent's ready line in the VM's log (no host session: clones start their own). */
async function agentServing(vm: QemuVm, timeoutMs: number, where: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exited = false;
  void vm.exited.then(() => (exited = true));
  for (;;) {
    const log = await readFile(vm.paths.vmLog, "utf8").catch(() => "");
    if (log.includes(AGENT_READY_MARK)) return;
    if (exited) throw await exitedError(await vm.exited, vm.paths, where, "while booting the template");
    if (Date.now() > deadline) throw new MoatError("MOAT_AGENT_TIMEOUT", `${where}: the agent did not start within ${timeoutMs} ms; ${await vcpuReport(vm.qmp, vm.pid)}`, { status: Code.DEADLINE_EXCEEDED });
    await sleep(READY_POLL_MS);
  }
}

/**
 * Removes the half-built templates of builders that died (a daemon killed mid-build): their
 * QEMU, found by its pid file and checked to be that build's, is killed, and the directory
 * removed. Builds whose builder still runs are left alone.
 */
export async function removeAbandonedBuilds(config: Config, log: (line: string) => void): Promise<void> {
  const root = templateRoot(config);
  for (const name of (await readdir(root).catch(() => [])).filter((entry) => entry.includes(".building-"))) {
    const dir = join(root, name);
    const builder = Number(await readFile(join(dir, BUILDER_PID_FILE), "utf8").catch(() => "0"));
    if (builder > 0 && !(await processGone(builder))) continue;
    const paths = vmPaths(dir, config.runtime.socketRoot);
    const qemu = await killRunningQemu(`template-${name.slice(0, name.indexOf(".building-"))}`, paths);
    await removeSocketDir(paths.socketDir);
    await rm(dir, { recursive: true, force: true });
    log(`template build ${name}: its builder is gone; removed${qemu !== undefined ? ` and its QEMU ${qemu} killed` : ""}`);
  }
}

async function removeOthers(root: string, kept: Template): Promise<void> {
  const others: Array<{ dir: string; usedMs: number }> = [];
  for (const name of await readdir(root).catch(() => [])) {
    if (name === kept.key || name.includes(".building-")) continue;
    const dir = join(root, name);
    const template = await readTemplate(dir);
    if (template?.family !== kept.family) await rm(dir, { recursive: true, force: true });
    else others.push({ dir, usedMs: (await stat(join(dir, "template.json"))).mtimeMs });
  }
  others.sort((a, b) => b.usedMs - a.usedMs);
  for (const { dir } of others.slice(MAX_TEMPLATES - 1)) await rm(dir, { recursive: true, force: true });
}

/**
 * Starts QEMU for `spec` from `template`: the same devices, the template's RAM file mapped
 * privately, the saved state loaded, the guest running. The caller then talks to its agent.
 * `nice`: QEMU's nice value (the warm pool's background restores).
 */
export async function restoreFromTemplate(config: Config, template: Template, spec: VmSpec, nice?: number): Promise<QemuVm> {
  const where = `sandbox ${spec.id}`;
  const restored: VmSpec = { ...spec, memoryFile: { path: template.memoryPath, shared: false }, incoming: true };
  const vm = await QemuVm.start({ ...vmmLaunch(config), qemuPath: config.qemu.path, spec: restored, startTimeoutMs: QEMU_START_TIMEOUT_MS, nice });
  try {
    await loadState(vm.qmp, template.statePath, spec.paths.migrationSocket, RESTORE_TIMEOUT_MS, where);
    return vm;
  } catch (error) {
    // QEMU dying is the usual reason a restore fails; then that is the error to show.
    const exit = await settleWithin(vm.exited, EXIT_SETTLE_MS);
    await vm.kill();
    if (exit) throw await exitedError(exit, spec.paths, where, "while restoring from the template");
    throw error;
  }
}

export interface TemplateStatus {
  key: string;
  family: string;
  vcpus: number;
  memoryMiB: number;
  /** NICs, one per interface of the sandboxes it serves. */
  nics: number;
  dir: string;
  created: string;
  /** Bytes of the memory file in use (it is sparse). */
  memoryBytes: number;
  stateBytes: number;
}

/** The templates kept in this configuration's template directory. */
export async function listTemplates(config: Config): Promise<TemplateStatus[]> {
  const root = templateRoot(config);
  const found: TemplateStatus[] = [];
  for (const name of await readdir(root).catch(() => [])) {
    const template = await readTemplate(join(root, name));
    if (!template) continue;
    const [memory, state] = await Promise.all([stat(template.memoryPath), stat(template.statePath)]);
    found.push({ key: template.key, family: template.family, vcpus: template.base.vcpus, memoryMiB: template.base.memoryMiB, nics: template.base.nics?.length ?? 0, dir: template.dir, created: template.created, memoryBytes: memory.blocks * 512, stateBytes: state.size });
  }
  return found;
}

/** Removes every template (restored VMs keep their mappings); returns how many there were. */
export async function destroyTemplates(config: Config): Promise<number> {
  const count = (await listTemplates(config)).length;
  await rm(templateRoot(config), { recursive: true, force: true });
  return count;
}
