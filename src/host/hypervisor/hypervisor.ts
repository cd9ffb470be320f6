// The hypervisor interface: what the sandbox layer asks of any VMM. QEMU is the one
// implementation today (qemu/); Cloud Hypervisor and Firecracker would sit beside it.

export type Accelerator = "kvm" | "tcg";
export type MachineType = "microvm" | "q35";
/** How host directories reach the guest: QEMU's built-in 9p server, or virtiofsd over vhost-user (Kata's `shared_fs` values). */
export type SharedFs = "virtio-fs" | "virtio-9p";

/** The guest's root file system: a read-only image on virtio-blk, or an initrd in RAM. */
export type GuestRootfs = { kind: "image"; path: string } | { kind: "initrd"; path: string };

/** Where one VM's sockets and logs live: all inside its state directory. */
export interface VmPaths {
  stateDir: string;
  qmpSocket: string;
  agentSocket: string;
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

export function vmPaths(stateDir: string): VmPaths {
  return {
    stateDir,
    qmpSocket: `${stateDir}/qmp.sock`,
    agentSocket: `${stateDir}/agent.sock`,
    consoleLog: `${stateDir}/console.log`,
    vmLog: `${stateDir}/vm.log`,
    hypervisorLog: `${stateDir}/qemu.log`,
    pidFile: `${stateDir}/qemu.pid`,
    migrationSocket: `${stateDir}/migrate.sock`,
    sharesDir: `${stateDir}/shares`,
    nameFile: `${stateDir}/qemu.name`,
  };
}

/**
 * The vhost-user socket on which the virtiofsd serving share `tag` listens; QEMU connects to
 * it. A short name: a unix socket path has 107 bytes, and podman's container ids (the state
 * directory's name) alone take 64.
 */
export function virtiofsSocketPath(stateDir: string, tag: string): string {
  return `${stateDir}/vfs-${tag}.sock`;
}
