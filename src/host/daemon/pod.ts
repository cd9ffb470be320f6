// One sandbox VM as moatd holds it: the containers in it (one, or a Kubernetes pod's), its OOM
// events and its log trimming, which are the VM's, not a container's. The VM goes with the
// last container that leaves it, in whatever order they go (docs/design.md, "Pods").
import { lstat, readdir, readlink, stat, symlink, unlink } from "node:fs/promises";
import { join } from "node:path";
import { MoatError } from "../../shared/errors.js";
import { tracer } from "../../shared/trace.js";
import { Code } from "../../shared/ttrpc/index.js";
import { removeSocketDir, socketDirFor, trimLogs, type SandboxVm } from "../sandbox/index.js";
import { OomWatch } from "./oom-watch.js";

const trace = tracer("daemon");

/** How often a sandbox's logs are looked at for trimming: a guest fills them at most this long before the oldest part goes. */
const LOG_TRIM_INTERVAL_MS = 5_000;

/** A pod member's own directories live under its pod's state directory, in this one. */
export const MEMBERS_DIR = "members";

/** Where a container's state file and its stand-in sockets are. */
export interface ContainerDirs {
  stateDir: string;
  socketDir: string;
  /** A pod member's entry under the state root (memberLink); none for a VM's own container. */
  link?: string;
}

/**
 * A pod member's directories: its state (container.json, its files directory) under the pod
 * VM's state directory, so that a restarted moatd finds it with its pod and a removed pod
 * takes it along; its sockets in a socket directory of its own (a fixed-length name from the
 * state directory's hash, as a VM's: socketDirFor), where its stand-in names stay short.
 */
export function memberDirs(stateRoot: string, socketRoot: string, podId: string, id: string): ContainerDirs & { filesDir: string; link: string } {
  const stateDir = join(stateRoot, podId, MEMBERS_DIR, id);
  return { stateDir, socketDir: socketDirFor(socketRoot, stateDir), filesDir: join(stateDir, "files"), link: join(stateRoot, id) };
}

/**
 * A pod member's entry under the state root: `<state root>/<id>`, a symlink to its state
 * directory in its pod's. What finds a task by its id there without asking moatd (the
 * containerd shim's relay, which ends once its task is gone and containerd is not connected;
 * the shim's `delete`, which answers by itself when nothing is there) finds a member too, and
 * the relay is woken when it goes (its watch on the state root). adoptAll skips symlinks: a
 * member is adopted with its pod.
 */
export async function linkMember(dirs: ContainerDirs & { link: string }, podId: string, id: string): Promise<void> {
  await symlink(join(podId, MEMBERS_DIR, id), dirs.link);
}

/** Removes what a pod member has outside its pod's state directory: its socket directory and its entry (linkMember). */
export async function removeMemberEntries(dirs: ContainerDirs): Promise<void> {
  await removeSocketDir(dirs.socketDir);
  if (dirs.link) await unlinkIfSymlink(dirs.link);
}

async function unlinkIfSymlink(path: string): Promise<void> {
  const found = await lstat(path).catch(() => undefined);
  if (found?.isSymbolicLink()) await unlink(path).catch((error: unknown) => ((error as NodeJS.ErrnoException).code === "ENOENT" ? undefined : Promise.reject(error))); // a Node system error carries its errno name
}

/** Removes members' entries (linkMember) under the state root whose member is gone: left by a moatd that died while removing one. */
export async function removeStaleMemberLinks(stateRoot: string, log: (line: string) => void): Promise<void> {
  const entries = await readdir(stateRoot, { withFileTypes: true }).catch(() => []);
  for (const entry of entries.filter((candidate) => candidate.isSymbolicLink())) {
    const path = join(stateRoot, entry.name);
    const target = await readlink(path).catch(() => "");
    // Only moat's own links: <pod>/members/<the link's name>.
    if (!target.endsWith(`/${MEMBERS_DIR}/${entry.name}`)) continue;
    if (await stat(path).then(() => true, () => false)) continue;
    log(`container ${entry.name}: its pod member entry is left without its member; removing it`);
    await unlinkIfSymlink(path);
  }
}

export class PodVm {
  /** Containers of the VM: attached, being made or being removed. */
  private readonly holders = new Set<string>();
  /** Member removals under way: the VM's shutdown waits for them (they use its agent and export). */
  private readonly leaving = new Set<Promise<void>>();
  readonly oom: OomWatch;
  private readonly logTrim: NodeJS.Timeout;
  /** Set once the last container left: the VM is going, and no container may join it. */
  private closing: Promise<void> | undefined;

  /** `reportOom` hears the container id of each OOM event from the guest; `gone` is called once the VM has shut down. */
  constructor(
    readonly sandbox: SandboxVm,
    reportOom: (id: string) => void,
    private readonly gone: () => void,
  ) {
    this.oom = new OomWatch(sandbox.agent, `sandbox ${sandbox.id}`, reportOom);
    this.logTrim = setInterval(() => {
      void trimLogs(sandbox.vm.paths).catch((error: unknown) => trace(sandbox.id, `trim logs: ${String(error)}`));
    }, LOG_TRIM_INTERVAL_MS).unref();
  }

  get id(): string {
    return this.sandbox.id;
  }

  /** The VM still takes containers: no shutdown has begun. */
  get open(): boolean {
    return this.closing === undefined;
  }

  get size(): number {
    return this.holders.size;
  }

  /** Counts container `id` in the VM (before it is made), so that the VM stays while it is. */
  hold(id: string, where: string): void {
    if (this.closing) {
      throw new MoatError("MOAT_POD_NOT_FOUND", `${where}: its pod's VM (sandbox ${this.id}) is shutting down: its last container was deleted`, { status: Code.NOT_FOUND, hint: "create the pod's sandbox container again" });
    }
    this.holders.add(id);
  }

  /**
   * Container `id` leaves the VM. If others stay, `leave` takes it out of the running VM (its
   * guest container, its binds); if it was the last, the VM shuts down instead, which takes
   * everything with it, once the removals under way have ended.
   */
  async release(id: string, leave: () => Promise<void>): Promise<void> {
    if (!this.holders.delete(id)) return;
    if (this.holders.size > 0) {
      const leaving = leave();
      this.leaving.add(leaving);
      try {
        await leaving;
      } finally {
        this.leaving.delete(leaving);
      }
      return;
    }
    this.closing ??= this.shutdown();
    await this.closing;
  }

  /** Shuts the VM down now (it has no container, or is being discarded). */
  private async shutdown(): Promise<void> {
    clearInterval(this.logTrim);
    await Promise.allSettled(this.leaving);
    try {
      await this.sandbox.shutdown();
    } finally {
      this.gone();
    }
  }

  /** Stops what the VM record runs on the host without touching the VM (it is discarded by the caller). */
  forget(): void {
    clearInterval(this.logTrim);
    this.holders.clear();
    this.closing ??= Promise.resolve();
    this.gone();
  }
}
