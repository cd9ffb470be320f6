// A VM's logs: the guest's serial console (console.log), the agent's log port (vm.log) and
// QEMU's own stderr (qemu.log), each written by QEMU, whatever the guest sends. The state root
// is /run, a tmpfs: host memory. So for every VM that may run a user's code the log directory
// is a tmpfs of its own, LOG_DIR_BYTES in all: the kernel refuses writes past it (ENOSPC, and
// QEMU drops what it cannot write), with or without moatd running, since QEMU and its guest
// outlive moatd. Why not RLIMIT_FSIZE on QEMU: QEMU's 9p server writes the guest's files into
// its shares (a container's root file system from containerd among them), which must not be
// capped at a log's size. A VM being made into a template runs only moat's own agent (and its
// warm-up container) and keeps its logs as plain files beside its saved state.
//
// While moatd owns a sandbox it trims the logs (trimLogs), so that what is kept is the newest
// part: that is what error messages quote (the console's last lines).
import { execFile } from "node:child_process";
import { mkdir, open, stat } from "node:fs/promises";
import { MoatError } from "../../../shared/errors.js";
import { ownMounts } from "../../../shared/mountinfo.js";
import { tracer } from "../../../shared/trace.js";
import { Code } from "../../../shared/ttrpc/index.js";
import type { VmPaths } from "../hypervisor.js";

const trace = tracer("qemu");

/** The most a VM's three logs hold together, in bytes. */
export const LOG_DIR_BYTES = 4 << 20;
/** A log over this is trimmed to its last TRIM_KEEP_BYTES when moatd looks (trimLogs). */
export const TRIM_ABOVE_BYTES = 1 << 20;
export const TRIM_KEEP_BYTES = 256 << 10;
const MOUNT_TIMEOUT_MS = 10_000;

/**
 * Makes the VM's log directory: a tmpfs of LOG_DIR_BYTES when `bounded`, a plain directory
 * otherwise. A directory already mounted (a VM restored again into it) is kept. The mount goes
 * with the state directory (storage's removeStateDir unmounts everything under it).
 */
export async function prepareLogDir(paths: VmPaths, bounded: boolean, where: string): Promise<void> {
  await mkdir(paths.logDir, { recursive: true, mode: 0o700 });
  if (!bounded) return;
  if ((await ownMounts()).some(({ mountPoint }) => mountPoint === paths.logDir)) return;
  // nr_inodes: three logs, and room for nothing else; noexec, nodev, nosuid: logs only.
  const options = `size=${LOG_DIR_BYTES},nr_inodes=16,mode=0700,noexec,nodev,nosuid`;
  await new Promise<void>((resolve, reject) =>
    execFile("mount", ["-t", "tmpfs", "-o", options, "moat-logs", paths.logDir], { timeout: MOUNT_TIMEOUT_MS }, (error, _stdout, stderr) => {
      if (!error) return resolve();
      reject(
        new MoatError("MOAT_VM_LOGS", `${where}: cannot mount the VM's log directory ${paths.logDir} (tmpfs of ${LOG_DIR_BYTES} bytes): ${stderr.trim() || error.message}`, {
          hint: "moat runs as root: mounting a tmpfs needs CAP_SYS_ADMIN",
          status: Code.INTERNAL,
        }),
      );
    }),
  );
}

/**
 * Keeps each log's newest TRIM_KEEP_BYTES once it has passed TRIM_ABOVE_BYTES: the kept bytes
 * are copied to the start of the file, which is then cut after them. QEMU appends (O_APPEND),
 * so it goes on at the new end; a line it appends between the copy and the cut is lost, which a
 * log can afford. A file that is gone counts as trimmed.
 */
export async function trimLogs(paths: VmPaths): Promise<void> {
  for (const path of [paths.consoleLog, paths.vmLog, paths.hypervisorLog]) {
    const size = await stat(path).then((info) => info.size, () => 0);
    if (size <= TRIM_ABOVE_BYTES) continue;
    const file = await open(path, "r+").catch(() => undefined);
    if (!file) continue;
    try {
      const kept = Buffer.alloc(TRIM_KEEP_BYTES);
      const { bytesRead } = await file.read(kept, 0, TRIM_KEEP_BYTES, size - TRIM_KEEP_BYTES);
      // Start at a line: the first, partial one is dropped.
      const newline = kept.subarray(0, bytesRead).indexOf(0x0a);
      const text = kept.subarray(newline + 1, bytesRead);
      await file.write(text, 0, text.length, 0);
      await file.truncate(text.length);
      trace(path, `trimmed from ${size} to ${text.length} bytes`);
    } finally {
      await file.close();
    }
  }
}
