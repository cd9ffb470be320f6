// What a VM's vCPUs are doing, for the error of a guest that does not answer: whether each one
// is halted (idle, waiting for an interrupt) or running, where (kernel or user mode, and its
// instruction pointer), and how much of a host CPU its thread used over a short look. Guests
// whose vCPUs all halt wait for an event that never came (a lost interrupt, a timer that did
// not fire); a vCPU that runs flat out is stuck in a loop; one that gets no host CPU at all is
// starved by the host.
import { readdir, readFile } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import type { QmpClient } from "./qmp.js";

export interface VcpuRegisters {
  index: number;
  /** RIP, or EIP for a vCPU in 32-bit or real mode, as QEMU prints it (hex). */
  ip: string;
  /** The current privilege level: 0 is the guest kernel, 3 its user space. */
  cpl: number;
  halted: boolean;
}

/** How long the threads' CPU time is watched. */
const LOOK_MS = 500;
const QMP_CALL_MS = 2_000;
/** Linux reports a thread's CPU time in USER_HZ ticks, 100 per second on every architecture moat runs on. */
const USER_HZ = 100;

/**
 * Parses HMP `info registers -a` (QEMU's x86 format): a `CPU#n` line, then lines of
 * `NAME=value` pairs, among them `RIP=` (or `EIP=`), `CPL=` and `HLT=`. vCPUs whose block
 * lacks any of the three are left out rather than guessed.
 */
export function parseRegisters(text: string): VcpuRegisters[] {
  const vcpus: VcpuRegisters[] = [];
  for (const block of text.split(/^CPU#/m).slice(1)) {
    const index = Number(/^(\d+)/.exec(block)?.[1]);
    const ip = /\b[RE]IP=([0-9a-f]+)/.exec(block)?.[1];
    const cpl = /\bCPL=(\d)/.exec(block)?.[1];
    const halted = /\bHLT=([01])/.exec(block)?.[1];
    if (Number.isInteger(index) && ip !== undefined && cpl !== undefined && halted !== undefined) {
      vcpus.push({ index, ip, cpl: Number(cpl), halted: halted === "1" });
    }
  }
  return vcpus;
}

/** One line for the vCPUs, e.g. `vCPU 0 halted in the kernel at ffffffff81000e5a, 0% of a host CPU; vCPU 1 …`. */
export function describeVcpuStates(vcpus: VcpuRegisters[], busyPercent: Map<number, number>): string {
  return vcpus
    .map(({ index, ip, cpl, halted }) => {
      const busy = busyPercent.get(index);
      const mode = cpl === 0 ? "the kernel" : cpl === 3 ? "user space" : `ring ${cpl}`;
      return `vCPU ${index} ${halted ? "halted" : "running"} in ${mode} at ${ip}${busy === undefined ? "" : `, ${busy}% of a host CPU`}`;
    })
    .join("; ");
}

/** The thread's user plus system CPU time in ticks (fields 14 and 15 of /proc/PID/task/TID/stat). */
export function threadTicks(stat: string): number | undefined {
  // The command name (field 2) is in parentheses and may hold spaces: count from after it.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const user = Number(fields[11]);
  const system = Number(fields[12]);
  return Number.isFinite(user) && Number.isFinite(system) ? user + system : undefined;
}

/** The host's id of each of process `pid`'s threads, by its id in the process's innermost pid namespace (NSpid's last field). */
async function hostThreadIds(pid: number): Promise<Map<number, number>> {
  const ids = new Map<number, number>();
  for (const task of await readdir(`/proc/${pid}/task`).catch(() => [])) {
    const status = await readFile(`/proc/${pid}/task/${task}/status`, "utf8").catch(() => "");
    const innermost = /^NSpid:.*\s(\d+)$/m.exec(status)?.[1];
    if (innermost !== undefined) ids.set(Number(innermost), Number(task));
  }
  return ids;
}

async function ticksOf(pid: number, thread: number): Promise<number | undefined> {
  const stat = await readFile(`/proc/${pid}/task/${thread}/stat`, "utf8").catch(() => undefined);
  return stat === undefined ? undefined : threadTicks(stat);
}

/**
 * Looks at the running VM `pid` through `qmp`: its vCPU threads' CPU use over LOOK_MS, then
 * their registers. Never throws: what cannot be learnt is said so, since this only serves an
 * error message.
 */
export async function vcpuReport(qmp: QmpClient, pid: number): Promise<string> {
  try {
    const cpus = (await qmp.execute("query-cpus-fast", undefined, QMP_CALL_MS)) as Array<{ "cpu-index": number; "thread-id": number }>;
    // QEMU names its threads by their ids in its own pid namespace (moat-jail's); /proc here
    // knows them by the host's.
    const hostTids = await hostThreadIds(pid);
    const hostTid = (cpu: { "thread-id": number }) => hostTids.get(cpu["thread-id"]) ?? cpu["thread-id"];
    const before = await Promise.all(cpus.map((cpu) => ticksOf(pid, hostTid(cpu))));
    await sleep(LOOK_MS);
    const after = await Promise.all(cpus.map((cpu) => ticksOf(pid, hostTid(cpu))));
    const busy = new Map<number, number>();
    cpus.forEach((cpu, i) => {
      const [start, end] = [before[i], after[i]];
      if (start !== undefined && end !== undefined) busy.set(cpu["cpu-index"], Math.round((((end - start) / USER_HZ) * 1000 * 100) / LOOK_MS));
    });
    const registers = (await qmp.execute("human-monitor-command", { "command-line": "info registers -a" }, QMP_CALL_MS)) as string;
    return describeVcpuStates(parseRegisters(registers), busy) || "(QEMU reported no vCPU registers)";
  } catch (error) {
    return `(cannot look at the vCPUs: ${error instanceof Error ? error.message : String(error)})`;
  }
}
