// The hypervisor interface: what the sandbox layer asks of any VMM. QEMU is the one
// implementation today (qemu/); Cloud Hypervisor and Firecracker would sit beside it.

import { createHash } from "node:crypto";

export type Accelerator = "kvm" | "tcg";
export type MachineType = "microvm" | "q35";
/** Who serves 9p: QEMU itself, or virtfs-proxy-helper jailed beside it (docs/storage.md). */
export type VirtfsServer = "qemu" | "proxy";

/** How host directories reach the guest: QEMU's built-in 9p server, or virtiofsd over vhost-user (Kata's `shared_fs` values). */
export type SharedFs = "virtio-fs" | "virtio-9p";

/** The guest's root file system: a read-only image on virtio-blk, or an initrd in RAM. */
export type GuestRootfs = { kind: "image"; path: string } | { kind: "initrd"; path: string };

/**
 * Where one VM's files live: logs, pid files and shares in its state directory; its unix
 * sockets in its socket directory (socketDirFor), whose path does not grow with the state
 * root or the sandbox id.
 */
export interface VmPaths {
  stateDir: string;
  /** <socket root>/<hash of stateDir>: QMP, agent, migration and virtiofsd sockets, and the stand-ins' (daemon/). */
  socketDir: string;
  qmpSocket: string;
  agentSocket: string;
  /**
   * Where the three logs below live: for a VM that may run a user's code, a tmpfs of a fixed
   * size, so that no guest can make the host keep more (qemu/log-dir.ts).
   */
  logDir: string;
  /** The guest kernel's serial console. */
  consoleLog: string;
  /** The agent's log lines (virtio-serial port log.0). */
  vmLog: string;
  /** QEMU's own stderr. */
  hypervisorLog: string;
  pidFile: string;
  /** Where saved state streams through on save and restore (QEMU's `migrate` to or from a unix socket). */
  migrationSocket: string;
  /**
   * The one directory a 9p VM exports (docs/storage.md): the host bind-mounts each share into
   * it, before or after QEMU starts, and the guest mounts them by subpath.
   */
  sharesDir: string;
  /**
   * The name QEMU was started with (`-name moat-<name>`), which identifies its process: a VM
   * from the warm pool keeps its pool name after its directory became a sandbox's.
   */
  nameFile: string;
}

/** A host directory exported to the guest (over VmSpec.sharedFs), mounted by the agent under its tag. */
export interface Share {
  /** The mount tag the guest sees (at most 31 characters). */
  tag: string;
  hostPath: string;
  readOnly: boolean;
}

/**
 * A virtio-net NIC (docs/networking.md). `tap` names the tap backing it, made in
 * VmSpec.network's namespace; without one the NIC has no backend: a VM template's NIC, which
 * a clone restored without a network keeps as it is.
 */
export interface Nic {
  /** The device's id ("nic0"); its netdev is "net-<id>". */
  id: string;
  /** The MAC the device has when QEMU starts (a clone keeps its template's). */
  mac: string;
  tap?: string;
}

export interface VmSpec {
  id: string;
  machine: MachineType;
  accelerator: Accelerator;
  vcpus: number;
  memoryMiB: number;
  kernelPath: string;
  rootfs: GuestRootfs;
  /** Extra kernel parameters from the configuration, appended last so that they win. */
  extraKernelParams: string[];
  /** Verbose guest kernel console instead of `quiet`. */
  debug: boolean;
  /** How host directories reach the guest. */
  sharedFs: SharedFs;
  /**
   * With 9p, who serves the files: QEMU's built-in `local` backend (undefined or "qemu"), or a
   * confined virtfs-proxy-helper per device that QEMU reaches over a socket pair ("proxy").
   */
  virtfsServer?: VirtfsServer;
  /**
   * virtio-fs: one vhost-user-fs device per share. 9p has one device whatever the shares,
   * exporting paths.sharesDir, and ignores this list.
   */
  shares: Share[];
  /** The host TSC frequency, used under TCG to skip the guest's timer calibration. */
  hostTscKhz: number | undefined;
  paths: VmPaths;
  /**
   * Guest RAM in a file instead of anonymous memory: `shared` for a VM template being made
   * (its RAM is written to the file), private for a VM restored from one (the file's pages
   * are mapped copy-on-write, so clones share what they do not write).
   */
  memoryFile?: { path: string; shared: boolean };
  /** Start paused, waiting for saved state to be loaded over QMP (a restore). */
  incoming?: boolean;
  /** virtio-net NICs, in device order (a template's are part of what it is). */
  nics?: Nic[];
  /**
   * NICs without a tap of their own get moat-jail's throwaway taps, in QEMU's own network
   * namespace: a warm pool VM's, moved into its sandbox's namespace when one takes it (a
   * template being built gets them anyway).
   */
  throwawayTaps?: boolean;
  /**
   * Where the NICs' taps are made: the network namespace, and the program that opens them
   * there and execs QEMU holding them (src/host/network/moat-tap-exec.c).
   */
  network?: { netns: string; tapExec: string };
}

export interface VmExit {
  code: number | null;
  signal: string | null;
}

/** A running VM. */
export interface Vm {
  readonly id: string;
  readonly pid: number;
  readonly paths: VmPaths;
  /** Resolves when the hypervisor process has exited. */
  readonly exited: Promise<VmExit>;
  /** Waits up to `graceMs` for the VM to exit by itself, then asks QEMU to quit, then kills it. */
  stop(graceMs: number): Promise<VmExit>;
  /** Kills the hypervisor process at once and waits for it to be gone. */
  kill(): Promise<VmExit>;
}

export function vmPaths(stateDir: string, socketRoot: string): VmPaths {
  const socketDir = socketDirFor(socketRoot, stateDir);
  return {
    stateDir,
    socketDir,
    qmpSocket: `${socketDir}/qmp.sock`,
    agentSocket: `${socketDir}/agent.sock`,
    logDir: `${stateDir}/logs`,
    consoleLog: `${stateDir}/logs/console.log`,
    vmLog: `${stateDir}/logs/vm.log`,
    hypervisorLog: `${stateDir}/logs/qemu.log`,
    pidFile: `${stateDir}/qemu.pid`,
    migrationSocket: `${socketDir}/migrate.sock`,
    sharesDir: `${stateDir}/shares`,
    nameFile: `${stateDir}/qemu.name`,
  };
}

/**
 * The vhost-user socket on which the virtiofsd serving share `tag` listens; QEMU connects to
 * it. A short name: it must fit in SOCKET_NAME_MAX_BYTES.
 */
export function virtiofsSocketPath(socketDir: string, tag: string): string {
  return `${socketDir}/vfs-${tag}.sock`;
}

/** A unix socket's path has at most 107 bytes (sun_path is 108, with its terminating NUL). */
export const SOCKET_PATH_MAX_BYTES = 107;
/** The longest name of a socket in a socket directory ("exec-12345.sock", "vfs-s0.sock"). */
export const SOCKET_NAME_MAX_BYTES = 16;
/** Hex digits of the state directory's SHA-256 that name its socket directory (80 bits). */
const SOCKET_DIR_NAME_CHARS = 20;
/** The longest socket root that leaves room for a socket directory and a socket name. */
export const SOCKET_ROOT_MAX_BYTES = SOCKET_PATH_MAX_BYTES - 1 - SOCKET_DIR_NAME_CHARS - 1 - SOCKET_NAME_MAX_BYTES;

/**
 * The directory of a sandbox's (or template's, or pool VM's) unix sockets: a fixed-length
 * name under the socket root ([runtime] socket_root), from a hash of its state directory.
 * Docker passes a --root under its exec root and 64-character ids, which leave no room for a
 * socket name in the state directory itself (issue 10); this path is the same length for any
 * state directory, and the same one for a restarted moatd, which finds the sockets by it.
 */
export function socketDirFor(socketRoot: string, stateDir: string): string {
  return `${socketRoot}/${createHash("sha256").update(stateDir).digest("hex").slice(0, SOCKET_DIR_NAME_CHARS)}`;
}
