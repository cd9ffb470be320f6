// Waiting for a process that is not our child (a QEMU or virtiofsd another moatd started):
// no exit event comes, so /proc is polled. A zombie counts as exited.
import { readFile } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";

/** Resolves once `pid` has exited or is a zombie. */
export async function pidExited(pid: number, pollMs: number): Promise<void> {
  for (;;) {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
    if (stat === "" || / Z /.test(stat.slice(stat.lastIndexOf(")")))) return;
    await sleep(pollMs);
  }
}
