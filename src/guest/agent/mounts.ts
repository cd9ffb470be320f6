// Mounts the agent makes for a container: its root file system from a 9p share, read-only,
// under a writable overlay whose upper layer lives in guest memory. Node has no mount(2), so
// busybox's mount does the call.
import { execFile } from "node:child_process";
import { mkdir } from "node:fs/promises";
import { MoatError } from "../../shared/errors.js";
import { Code } from "../../shared/ttrpc/index.js";

function run(command: string, args: string[], where: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { timeout: 30_000 }, (error, _stdout, stderr) => {
      if (!error) return resolve();
      reject(new MoatError("MOAT_GUEST_MOUNT", `${where}: ${command} ${args.join(" ")}: ${stderr.trim() || error.message}`, { status: Code.INTERNAL }));
    });
  });
}

/** Mounts the 9p share `tag` read-only at `dir/lower` and an overlay of it at `dir/rootfs`. */
export async function mountRootfs(tag: string, dir: string, where: string): Promise<string> {
  const lower = `${dir}/lower`;
  const rootfs = `${dir}/rootfs`;
  for (const path of [lower, `${dir}/upper`, `${dir}/work`, rootfs]) await mkdir(path, { recursive: true });
  await run("/bin/mount", ["-t", "9p", "-o", "trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose", tag, lower], where);
  try {
    await run("/bin/mount", ["-t", "overlay", "-o", `lowerdir=${lower},upperdir=${dir}/upper,workdir=${dir}/work`, "overlay", rootfs], where);
  } catch (error) {
    await unmount(lower);
    throw error;
  }
  return rootfs;
}

/** Unmounts what mountRootfs mounted; what is not mounted is skipped. */
export async function unmountRootfs(dir: string): Promise<void> {
  await unmount(`${dir}/rootfs`);
  await unmount(`${dir}/lower`);
}

async function unmount(path: string): Promise<void> {
  await run("/bin/umount", [path], path).catch(() => undefined);
}
