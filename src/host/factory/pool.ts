// The warm pool ([factory] vm_cache_number, docs/templates.md): moatd keeps up to N VMs
// restored from the template, running checked, then paused, under <state root>/.pool/<id>/. A
// new sandbox takes one: moatd lets it run and moves its directory to the sandbox's; the
// sandbox then bind-mounts its shares into it and makes it its own (RNG, clock, hostname), so
// what is left of its start is its container's. One VM is restored at a time in the
// background, never more than N, and none while the host's available memory is under a floor.
// With [factory] vm_cache_networked = M it also keeps M VMs restored from the template with one
// NIC, each NIC backed by a throwaway tap that moat-jail made in QEMU's own network namespace:
// a sandbox with one interface takes one, and its tap is moved (renamed tap0_moat) into the
// sandbox's namespace, where it is plumbed as a tap made there would be (network/pool-tap.ts).
// A tap is a net device like any other: it moves between namespaces with QEMU's descriptor
// still open on it, and still goes when QEMU closes it, so QEMU never learns of the move.
import { randomBytes } from "node:crypto";
import { mkdir, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { CleanupStack } from "../../shared/cleanup.js";
import { tracer } from "../../shared/trace.js";
import type { Config } from "../config/index.js";
import { killRunningQemu, makeSocketDir, moveSocketDir, runningQemuPid, vmPaths, type QemuVm } from "../hypervisor/index.js";
import { removeStateDir } from "../storage/index.js";
import { ensureTemplate, restoreFromTemplate, type TemplateBase } from "./template.js";

const trace = tracer("factory");

/** Not a valid sandbox id, so that no container's state directory can take its name. */
const POOL_DIR = ".pool";
/** Written into a pool VM's directory once it is ready (restored, paused): what `moat factory status` counts. */
const READY_FILE = "ready";
/**
 * No refill while the host's MemAvailable is below this plus the VM's memory size: a pool VM
 * costs ~45-90 MiB at rest, but its guest may grow to its full size once a sandbox has it, and
 * the pool must never be what pushes the host into reclaim or the OOM killer.
 */
export const POOL_MEMORY_FLOOR_MIB = 1024;
/** How often a pool below N tries again (after a failure, or while memory was short). */
const RETRY_MS = 5_000;
const QMP_CALL_MS = 5_000;
/**
 * A pool VM is restored at the lowest priority and given normal priority when a sandbox takes
 * it: refilling right after a handout competes for the same cores as the sandbox that just
 * took a VM (on 2 cores under TCG it made a pooled start no faster than a restore, measured).
 */
const FILL_NICE = 19;

export interface PoolOptions {
  config: Config;
  /** The VM the pool's sandboxes get (the configuration's default size, with `nics` NICs): what its template is keyed by. */
  base(nics: number): Promise<TemplateBase>;
  log(line: string): void;
}

interface PooledVm {
  id: string;
  vm: QemuVm;
  /** The key of the template it was restored from. */
  template: string;
  /** Its NICs (0 or 1), each backed by a throwaway tap in QEMU's network namespace. */
  nics: number;
}

export type TakeResult = { taken: true } | { taken: false; reason: string };

export class VmPool {
  private readonly ready: PooledVm[] = [];
  private filling: Promise<void> | undefined;
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;
  /** The last reason a fill did not happen, logged once per change. */
  private lastSkip = "";

  constructor(private readonly options: PoolOptions) {}

  get capacity(): number {
    return this.options.config.factory.vmCacheNumber + this.options.config.factory.vmCacheNetworked;
  }

  /** How many VMs with `nics` NICs the pool keeps. */
  private wanted(nics: number): number {
    const { factory } = this.options.config;
    return nics === 0 ? factory.vmCacheNumber : factory.vmCacheNetworked;
  }

  /** The NIC count the next VM restored should have, if the pool is short of one. */
  private shortOf(): number | undefined {
    return [0, 1].find((nics) => this.ready.filter((pooled) => pooled.nics === nics).length < this.wanted(nics));
  }

  /** Starts filling; retries on a timer while below capacity. */
  start(): void {
    this.timer = setInterval(() => this.refill(), RETRY_MS);
    this.refill();
  }

  /**
   * Hands a ready VM restored from `template` to sandbox `sandboxId`: it runs again and its
   * directory becomes `stateDir` (which the caller created, empty). The VM is then the
   * caller's; the pool refills.
   */
  async take(sandboxId: string, template: string, stateDir: string): Promise<TakeResult> {
    const index = this.ready.findIndex((pooled) => pooled.template === template);
    if (index < 0) {
      const held = this.ready[0]?.template;
      return { taken: false, reason: held ? `it holds VMs of template ${held}, not ${template}` : `empty (${this.capacity} wanted${this.filling ? ", one being restored" : ""})` };
    }
    const [pooled] = this.ready.splice(index, 1);
    try {
      const { id, vm } = pooled!; // index was found above
      await vm.renice(0);
      await vm.qmp.execute("cont", undefined, QMP_CALL_MS);
      vm.qmp.close(new Error("handed to a sandbox")); // the sandbox opens its own QMP session
      await rename(vm.paths.stateDir, stateDir);
      await moveSocketDir(vm.paths, vmPaths(stateDir, this.options.config.runtime.socketRoot), `sandbox ${sandboxId}`);
      trace(sandboxId, `took pool VM ${id} (${this.ready.length} left)`);
      return { taken: true };
    } catch (error) {
      await this.discard(pooled!);
      return { taken: false, reason: `its VM ${pooled!.id} failed: ${String(error)}` };
    } finally {
      this.refill();
    }
  }

  /** Kills every pool VM and removes the pool's directory; no refill after this. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.filling;
    for (const pooled of this.ready.splice(0)) await this.discard(pooled);
    await rm(join(this.options.config.runtime.stateRoot, POOL_DIR), { recursive: true, force: true });
  }

  private refill(): void {
    const nics = this.shortOf();
    if (this.filling || this.stopped || nics === undefined) return;
    this.filling = this.fillOne(nics)
      .then(
        (filled) => filled,
        (error: unknown) => {
          this.skip(`cannot restore a VM: ${String(error)}; trying again in ${RETRY_MS / 1000} s`);
          return false;
        },
      )
      .then((filled) => {
        this.filling = undefined;
        if (filled) this.refill();
      });
  }

  /** Restores one VM with `nics` NICs into the pool; false if memory is short. */
  private async fillOne(nics: number): Promise<boolean> {
    const { config } = this.options;
    const base = await this.options.base(nics);
    const available = await memAvailableMiB();
    const floor = POOL_MEMORY_FLOOR_MIB + base.memoryMiB;
    if (available < floor) {
      this.skip(`not refilling: MemAvailable ${available} MiB is below the floor of ${floor} MiB (${POOL_MEMORY_FLOOR_MIB} + a VM's ${base.memoryMiB})`);
      return false;
    }
    const template = await ensureTemplate(config, base);
    const id = `pool-${randomBytes(6).toString("hex")}`;
    const paths = vmPaths(join(config.runtime.stateRoot, POOL_DIR, id), config.runtime.socketRoot);
    const cleanup = new CleanupStack();
    try {
      await mkdir(paths.sharesDir, { recursive: true, mode: 0o700 });
      cleanup.push(`remove ${paths.stateDir}`, () => removeStateDir(paths));
      await makeSocketDir(paths, `warm pool ${id}`);
      const startedAt = performance.now();
      // Its NICs restore onto throwaway taps (a NIC needs a backend with the template's vnet
      // header), which the taker moves into its namespace.
      const vm = await restoreFromTemplate(config, template, { ...base, id, shares: [], paths, ...(nics > 0 ? { throwawayTaps: true } : {}) }, FILL_NICE);
      cleanup.push(`kill QEMU ${vm.pid}`, () => vm.kill().then(() => undefined));
      // Its agent was serving when the template was saved, and the restore ran it: the VM is
      // ready. No agent session is opened here: a session closed just before the pause can
      // leave the guest's relay unaware that it ended (it sees the host's hang-up only if it
      // polls between the close and the next connect), and the sandbox's session would then
      // be fed into the old one. The taker's session is the VM's first, as a clone's is.
      const { status } = await vm.qmp.query("query-status", undefined, QMP_CALL_MS);
      if (status !== "running") throw new Error(`QEMU is "${String(status).slice(0, 200)}" after the restore`);
      // Paused until a sandbox takes it: an idle guest still costs CPU under TCG.
      await vm.qmp.execute("stop", undefined, QMP_CALL_MS);
      await writeFile(join(paths.stateDir, READY_FILE), "");
      if (this.stopped) {
        await cleanup.unwind();
        return false;
      }
      cleanup.release();
      const pooled = { id, vm, template: template.key, nics };
      this.ready.push(pooled);
      // A pool VM that dies is dropped (once a sandbox has it, its exit is the sandbox's).
      void vm.exited.then(() => {
        if (this.ready.includes(pooled)) void this.discard(pooled);
      });
      this.lastSkip = "";
      trace(id, `ready in the warm pool after ${Math.round(performance.now() - startedAt)} ms (${this.ready.length} of ${this.capacity})`);
      return true;
    } catch (error) {
      await cleanup.unwind();
      throw error;
    }
  }

  private async discard(pooled: PooledVm): Promise<void> {
    const at = this.ready.indexOf(pooled);
    if (at >= 0) this.ready.splice(at, 1);
    await pooled.vm.kill();
    await removeStateDir(pooled.vm.paths).catch((error: unknown) => this.options.log(`warm pool: ${String(error)}`));
  }

  private skip(reason: string): void {
    if (reason !== this.lastSkip) this.options.log(`warm pool: ${reason}`);
    this.lastSkip = reason;
  }
}

/**
 * Removes the pool VMs a daemon that died left behind (they are only ever its own): each QEMU,
 * found by its pid file and checked to be that VM's, is killed, and the directory removed.
 */
export async function removePoolLeftovers(config: Config, log: (line: string) => void): Promise<void> {
  const root = join(config.runtime.stateRoot, POOL_DIR);
  for (const id of await readdir(root).catch(() => [])) {
    const paths = vmPaths(join(root, id), config.runtime.socketRoot);
    const pid = await killRunningQemu(id, paths);
    await removeStateDir(paths);
    log(`warm pool: ${id} was left by a daemon that is gone; removed${pid !== undefined ? ` and its QEMU ${pid} killed` : ""}`);
  }
  await rm(root, { recursive: true, force: true });
}

/** The pool VMs that are ready, as `moat factory status` shows them: read from disk, the daemon's own state. */
export async function readyPoolVms(config: Config): Promise<string[]> {
  const root = join(config.runtime.stateRoot, POOL_DIR);
  const ready: string[] = [];
  for (const id of await readdir(root).catch(() => [])) {
    const paths = vmPaths(join(root, id), config.runtime.socketRoot);
    const isReady = await readFile(join(paths.stateDir, READY_FILE)).then(() => true, () => false);
    if (isReady && (await runningQemuPid(id, paths)) !== undefined) ready.push(id);
  }
  return ready;
}

/** MemAvailable from /proc/meminfo, in MiB. */
async function memAvailableMiB(): Promise<number> {
  const meminfo = await readFile("/proc/meminfo", "utf8");
  const kib = Number(/^MemAvailable:\s+(\d+) kB$/m.exec(meminfo)?.[1] ?? Number.NaN);
  if (!Number.isFinite(kib)) throw new Error("/proc/meminfo: no MemAvailable line");
  return Math.floor(kib / 1024);
}
