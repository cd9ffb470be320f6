// Whether a process we did not start (an adopted QEMU, a template's builder) has ended.

import { readFile } from "node:fs/promises";

/**
 * True once `pid` has exited. A process that has exited but was not reaped yet (a zombie:
 * its parent has not waited for it) counts as gone, although signal 0 still reaches it.
 */
export async function processGone(pid: number): Promise<boolean> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
  return stat === "" || / Z /.test(stat.slice(stat.lastIndexOf(")")));
}
