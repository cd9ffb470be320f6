// What moat-jail (../moat-jail.c) is told for one VM: the paths its QEMU may see, the
// descriptors it keeps, and who it runs as. Pure, so that it can be tested and printed.
//
// QEMU's filesystem is a tmpfs holding /usr (read-only), four device nodes and exactly these:
// the kernel and the root image (read-only), the socket directory (QMP, agent, migration and
// virtiofsd sockets) and the log directory (read-write), a template's RAM file, /dev/kvm if
// it is used, and the 9p export (as a slave of the host's mount, so shares mounted after the
// start arrive) unless `virtfs_server = "proxy"`, where moat-jail's helpers hold it instead
// and QEMU has no capability. The state directory itself (pid file, network and cgroup records, bundle
// copies) is not there.
import { execFile } from "node:child_process";
import { dirname } from "node:path";
import { promisify } from "node:util";
import { MoatError } from "../../../shared/errors.js";
import { Code } from "../../../shared/ttrpc/index.js";
import type { VmSpec } from "../hypervisor.js";
import { throwawayTaps } from "./cmdline.js";

const run = promisify(execFile);

/** The 9p file server moat-jail runs beside QEMU for `virtfs_server = "proxy"` (its default --9p-helper). */
export const VIRTFS_PROXY_HELPER = "/usr/lib/qemu/virtfs-proxy-helper";

/** An unprivileged user QEMU runs as (docs/security.md "Who QEMU runs as"). */
export interface VmmUser {
  uid: number;
  gid: number;
}

/**
 * The capabilities a root QEMU keeps while it serves 9p itself with security_model=none:
 * those of a file server acting on files of every owner (chown, permission bypass for read,
 * write and search, set-id bits kept on write, device nodes). No other: no CAP_SYS_ADMIN,
 * CAP_NET_*, CAP_SYS_PTRACE, CAP_SETUID, CAP_SYS_MODULE...
 */
export const FILE_SERVER_CAPS = ["chown", "dac_override", "dac_read_search", "fowner", "fsetid", "mknod"] as const;

/**
 * The user QEMU runs as for `spec`: the configured unprivileged user where nothing in the VM
 * needs root on the host, else root (undefined) with FILE_SERVER_CAPS only. A VM needs root
 * while QEMU serves 9p (it acts on the shares' files as their owners) and while its RAM is a
 * template's file (root's, 0600, shared by every clone).
 */
export function vmmUserFor(spec: VmSpec, configured: VmmUser | undefined): VmmUser | undefined {
  if (configured === undefined) return undefined;
  if (spec.sharedFs === "virtio-9p" || spec.memoryFile !== undefined) return undefined;
  return configured;
}

/** moat-jail's arguments for `spec`, up to and including its `--`. */
export function jailArgs(spec: VmSpec, qemuPath: string, keepFds: number, user: VmmUser | undefined): string[] {
  const { paths } = spec;
  const args = ["--keep-fds", String(keepFds), "--pidfile", paths.pidFile];
  const taps = throwawayTaps(spec);
  if (taps > 0) args.push("--throwaway-taps", String(taps)); // a template's NICs' backends (cmdline.ts)
  if (!qemuPath.startsWith("/usr/")) args.push("--ro", qemuPath); // /usr is there already
  args.push("--ro", spec.kernelPath, "--ro", spec.rootfs.path, "--rw", paths.socketDir, "--rw", paths.logDir);
  if (spec.memoryFile) {
    // A template being made creates its RAM file; a clone opens its template's read-write
    // (QEMU 7.2 maps a private file backend from a descriptor opened O_RDWR).
    args.push("--rw", spec.memoryFile.shared ? dirname(spec.memoryFile.path) : spec.memoryFile.path);
  }
  const proxy = spec.sharedFs === "virtio-9p" && spec.virtfsServer === "proxy";
  if (proxy) {
    // One jailed helper per 9p device (cmdline.ts: their sockets come after the taps); QEMU's
    // own jail does not hold the export at all.
    const option = spec.memoryFile?.shared ? "--9p-proxy-ro" : "--9p-proxy"; // a template's stays empty
    args.push(option, paths.sharesDir, option, paths.sharesDir);
  } else if (spec.sharedFs === "virtio-9p") {
    // A template's export stays empty; any other VM's gets its shares mounted while it runs.
    args.push(spec.memoryFile?.shared ? "--ro" : "--rslave", paths.sharesDir);
  }
  if (spec.accelerator === "kvm") args.push("--rw", "/dev/kvm");
  if (user) args.push("--uid", String(user.uid), "--gid", String(user.gid), "--caps", "none");
  else if (proxy) args.push("--caps", "none"); // root for the template's RAM file, nothing else
  else args.push("--caps", FILE_SERVER_CAPS.join(","));
  args.push("--");
  return args;
}

/**
 * Makes a 9p export directory a shared mount of its own (bound onto itself), before any share
 * is mounted under it: the jail's copy is then its slave, and shares the host mounts there
 * later reach QEMU. Done after shares are mounted, the bind would hide them from QEMU and
 * from their unmounting. moat-jail does the same for an export that is not a mount yet
 * (one with no shares: a warm pool VM's); removeStateDir unmounts it like every mount under
 * a state directory.
 */
export async function makeExportMount(dir: string, where: string): Promise<void> {
  try {
    await run("mount", ["--bind", dir, dir]);
    await run("mount", ["--make-shared", dir]);
  } catch (error) {
    throw new MoatError("MOAT_SHARE_MOUNT", `${where}: cannot make ${dir} a shared mount for QEMU's jail`, { cause: error, status: Code.INTERNAL });
  }
}
