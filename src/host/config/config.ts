// moat's configuration, typed. Key names follow Kata's configuration.toml where they mean
// the same thing (docs/config.md); camelCase starts here, at the mapping.
import type { MachineType, SharedFs, VirtfsServer, VmmUser } from "../hypervisor/index.js";
import type { VirtioFsCache } from "../storage/index.js";

export interface QemuConfig {
  /** The QEMU binary. */
  path: string;
  /** The guest kernel (uncompressed vmlinux, booted through PVH). */
  kernel: string;
  /** The guest root file system as a read-only image on virtio-blk; exclusive with initrd. */
  image: string | undefined;
  /** The guest root file system as an initrd; exclusive with image. */
  initrd: string | undefined;
  machineType: MachineType;
  defaultVcpus: number;
  defaultMemoryMiB: number;
  /** The most vCPUs a sandbox VM may have, its container's CPU limit added (0: the host's CPU count, which also caps any other value). */
  defaultMaxVcpus: number;
  /** The most memory a sandbox VM may have, its container's memory limit added, in MiB (0: the host's MemTotal, which also caps any other value). */
  defaultMaxMemoryMiB: number;
  /** Extra guest kernel parameters, appended after moat's own. */
  kernelParams: string[];
  /** Verbose guest console and agent tracing. */
  enableDebug: boolean;
  /** How container root file systems and bind-mount sources reach the guest. */
  sharedFs: SharedFs;
  /** With 9p, who serves the files: QEMU itself, or a confined virtfs-proxy-helper per device (`virtfs_server`). */
  virtfsServer: VirtfsServer;
  /** The virtiofsd binary (used when sharedFs is virtio-fs). */
  virtioFsDaemon: string;
  /** virtiofsd's cache mode. */
  virtioFsCache: VirtioFsCache;
  /**
   * The unprivileged user QEMU runs as where nothing in its VM needs root (`vmm_user`;
   * docs/security.md); undefined: every QEMU runs as root with the file server's capabilities only.
   */
  vmmUser: VmmUser | undefined;
  /**
   * Which per-pod annotations (`io.katacontainers.config.hypervisor.<name>`, and the same under
   * `io.moat.config.`) may override this configuration: Kata's `enable_annotations`, each entry
   * a name or a regular expression matched against the whole <name> (annotations.ts).
   */
  enableAnnotations: string[];
}

export interface AgentConfig {
  /** How long a booting guest's agent may take to answer, in ms. */
  dialTimeoutMs: number;
}

export interface RuntimeConfig {
  /** Where sandbox state (logs, pid files, shares) lives, one directory per sandbox. */
  stateRoot: string;
  /** Where sandboxes' unix sockets live, one directory per sandbox named by a hash of its state directory. */
  socketRoot: string;
}

export interface FactoryConfig {
  /** Start sandboxes by restoring a saved VM template instead of booting (docs/templates.md). */
  enableTemplate: boolean;
  /** Where templates are kept; undefined: <state root>/.templates. */
  templatePath: string | undefined;
  /** VMs moatd keeps restored from the template ahead of time, handed one to each new sandbox (0: none). */
  vmCacheNumber: number;
  /**
   * VMs with one NIC the pool also keeps, for sandboxes with one interface (a CNI network, a
   * podman or Docker container); their throwaway taps move into the sandbox's namespace (0: none).
   */
  vmCacheNetworked: number;
}

export interface Config {
  /** The file the configuration was read from, or undefined for built-in defaults only. */
  source: string | undefined;
  qemu: QemuConfig;
  agent: AgentConfig;
  runtime: RuntimeConfig;
  factory: FactoryConfig;
}
