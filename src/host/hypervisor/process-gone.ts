// Whether a process we did not start has ended (an adopted QEMU or virtiofsd, a template's
// builder): no exit event comes for it, so /proc is read.
import { readFile } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";

/**
 * True once `pid` has exited. A process that has exited but was not reaped yet (a zombie:
 * its parent has not waited for it) counts as gone, although signal 0 still reaches it.
 */
export async function processGone(pid: number): Promise<boolean> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
  return stat === "" || / Z /.test(stat.slice(stat.lastIndexOf(")")));
}

/** Resolves once `pid` is gone, looking every `pollMs`. */
export async function pidExited(pid: number, pollMs: number): Promise<void> {
  while (!(await processGone(pid))) await sleep(pollMs);
}
