// Whether a process we did not start has ended (an adopted QEMU or virtiofsd, a template's
// builder): no exit event comes for it, so /proc is read.
import { readdir, readFile } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";

/**
 * True once `pid` has exited. A process that has exited but was not reaped yet (a zombie:
 * its parent has not waited for it) counts as gone, although signal 0 still reaches it, but
 * only once its last thread has gone too: the leader of a killed multi-threaded process (QEMU)
 * shows as a zombie while its other threads still hold its files, and mounts it uses stay busy.
 */
export async function processGone(pid: number): Promise<boolean> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
  if (stat === "") return true;
  if (!/ Z /.test(stat.slice(stat.lastIndexOf(")")))) return false;
  const threads = await readdir(`/proc/${pid}/task`).catch(() => []);
  return threads.length <= 1;
}

/** Resolves once `pid` is gone, looking every `pollMs`. */
export async function pidExited(pid: number, pollMs: number): Promise<void> {
  while (!(await processGone(pid))) await sleep(pollMs);
}
