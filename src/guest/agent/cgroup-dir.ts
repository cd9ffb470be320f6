// Where a process's cgroup v2 directory is: /sys/fs/cgroup plus the path its /proc/PID/cgroup
// names on the "0::" line. crun puts a container's init in the container's cgroup at create.
import { readFile } from "node:fs/promises";

/** The process's cgroup directory; undefined once the process is gone. */
export async function cgroupDirOf(pid: number): Promise<string | undefined> {
  const membership = await readFile(`/proc/${pid}/cgroup`, "utf8").catch(() => "");
  const path = /^0::(\/.*)$/m.exec(membership)?.[1];
  return path === undefined ? undefined : `/sys/fs/cgroup${path === "/" ? "" : path}`;
}
