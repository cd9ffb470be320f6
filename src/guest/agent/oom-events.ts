// OOM kills in the containers' cgroups, as numbered events the host takes one at a time
// (OomService.NextOomEvent). Each container's memory.events is watched (the kernel reports a
// change of it to inotify) and read again whenever one of the container's processes exits:
// an OOM kill that ended a process is then queued before that exit is answered, and
// WaitProcess carries the sequence number the host must have seen first (containerd wants
// /tasks/oom before the /tasks/exit of the process the OOM killed).
import { watch, type FSWatcher } from "node:fs";
import { readFile } from "node:fs/promises";
import { MoatError } from "../../shared/errors.js";
import { Code } from "../../shared/ttrpc/index.js";
import { oomKillCount } from "./memory-events.js";

/** Events kept until the host acknowledges them; a host that does not read loses the oldest. */
const MAX_PENDING = 64;

export interface OomEvent {
  containerId: string;
  sequence: bigint;
}

interface WatchedCgroup {
  file: string;
  /** The oom_kill count already reported (or already there when watching began). */
  oomKills: number;
  watcher: FSWatcher | undefined;
}

export class OomEvents {
  private readonly watched = new Map<string, WatchedCgroup>();
  private pending: OomEvent[] = [];
  private lastSequence = 0n;
  private readonly wakers = new Set<() => void>();

  constructor(private readonly log: (line: string) => void) {}

  /** Starts watching a container's cgroup directory; OOM kills counted before now are not events. */
  async watch(containerId: string, cgroupDir: string): Promise<void> {
    const file = `${cgroupDir}/memory.events`;
    const oomKills = oomKillCount(await readFile(file, "utf8").catch(() => ""));
    if (oomKills === undefined) return this.log(`container ${containerId}: no memory.events in ${cgroupDir}: its OOM kills go unreported`);
    const entry: WatchedCgroup = { file, oomKills, watcher: undefined };
    try {
      entry.watcher = watch(file, { persistent: false }, () => void this.check(containerId));
      entry.watcher.on("error", () => entry.watcher?.close()); // the cgroup was removed: nothing more to see
    } catch (error) {
      // Without inotify the exit-time read below still reports the OOM kills that end processes.
      this.log(`container ${containerId}: cannot watch ${file}: ${String(error)}`);
    }
    this.watched.set(containerId, entry);
  }

  unwatch(containerId: string): void {
    this.watched.get(containerId)?.watcher?.close();
    this.watched.delete(containerId);
  }

  /**
   * Reads the container's memory.events again and queues an event if oom_kill rose; answers
   * the last sequence number queued so far (by this read or an earlier one).
   */
  async check(containerId: string): Promise<bigint> {
    const entry = this.watched.get(containerId);
    if (entry) {
      const count = oomKillCount(await readFile(entry.file, "utf8").catch(() => ""));
      // Compared and updated after the read, in one step: two reads at once queue one event.
      if (count !== undefined && count > entry.oomKills) {
        entry.oomKills = count;
        this.queue(containerId);
      }
    }
    return this.lastSequence;
  }

  /** Acknowledges the events up to `afterSequence`; answers the oldest after it, waiting for one. */
  async next(afterSequence: bigint, signal: AbortSignal): Promise<OomEvent> {
    for (;;) {
      this.pending = this.pending.filter((event) => event.sequence > afterSequence);
      const oldest = this.pending[0];
      if (oldest) return oldest;
      if (signal.aborted) throw new MoatError("MOAT_AGENT_REQUEST", "NextOomEvent: cancelled", { status: Code.CANCELLED });
      await new Promise<void>((resolve) => {
        const wake = () => {
          this.wakers.delete(wake);
          signal.removeEventListener("abort", wake);
          resolve();
        };
        this.wakers.add(wake);
        signal.addEventListener("abort", wake, { once: true });
      });
    }
  }

  private queue(containerId: string): void {
    this.pending.push({ containerId, sequence: ++this.lastSequence });
    if (this.pending.length > MAX_PENDING) {
      const dropped = this.pending.shift()!; // longer than MAX_PENDING, so not empty
      this.log(`OOM event ${dropped.sequence} (container ${dropped.containerId}) dropped: the host has not taken the last ${MAX_PENDING}`);
    }
    for (const wake of [...this.wakers]) wake();
  }
}
