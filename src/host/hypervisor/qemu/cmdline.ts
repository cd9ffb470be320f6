// The QEMU command line for one VM, built from a VmSpec and nothing else (no I/O), so that
// it can be tested and printed as it is.
//
// microvm is the default machine: no PCI, no firmware, virtio over mmio, the fastest boot
// measured here. q35 is there for what needs PCI (hotplug, VFIO). Every device is named, so
// that QMP commands and templates can refer to it. Shares are one 9p device QEMU serves itself,
// exporting the sandbox's shares directory, or vhost-user-fs devices served by one virtiofsd
// each (docs/storage.md).
import { SHARES_9P_LIVE_TAG, SHARES_9P_TAG } from "../../../shared/protocol/index.js";
import { virtiofsSocketPath, type VmSpec } from "../hypervisor.js";
import { kernelParams } from "./kernel-params.js";

/** The descriptor of the first NIC's tap in QEMU (moat-tap-exec.c puts them there). */
export const TAP_FIRST_FD = 3;
/** TCG's translation buffer, in MiB (QEMU's default is 1024). */
const TCG_TB_SIZE_MIB = 32;

export function qemuArgs(spec: VmSpec): string[] {
  const { paths } = spec;
  const mmio = spec.machine === "microvm";
  const virtio = (device: string) => (mmio ? `virtio-${device}-device` : `virtio-${device}-pci`);
  const virtiofs = spec.sharedFs === "virtio-fs" && spec.shares.length > 0;
  // Guest RAM on a named backend: a file for a VM template or its clones (factory/), or, for
  // vhost-user, a shared memfd: virtiofsd reads and writes guest RAM itself, so it must be a
  // mapping it can map too. The two never meet: a vhost-user device blocks migration, so
  // sandboxes with virtio-fs shares boot cold (sandbox/sandbox-vm.ts).
  const memoryBackend = spec.memoryFile || virtiofs ? ",memory-backend=ram" : "";
  const machine =
    spec.machine === "microvm"
      ? `microvm,isa-serial=on${memoryBackend}`
      : `q35${memoryBackend}`;
  const args = [
    "-name", `moat-${spec.id},debug-threads=on`,
    "-machine", machine,
    // TCG's translated code lives in a buffer of 1 GiB by default that an idle guest keeps
    // filling (~55 MiB of private memory per VM measured here); 32 MiB costs no measurable
    // speed (ARCHITECTURE.md: only below that does boot slow down).
    "-accel", spec.accelerator === "tcg" ? `tcg,tb-size=${TCG_TB_SIZE_MIB}` : "kvm",
    "-cpu", spec.accelerator === "kvm" ? "host" : "max",
    "-smp", String(spec.vcpus),
    "-m", `${spec.memoryMiB}M`,
    "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
    // QEMU's own seccomp filter: no exec, no privilege changes, no obsolete syscalls.
    "-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
    "-msg", "timestamp=on",
    // No -pidfile: QEMU is pid 1 of its own pid namespace and cannot see the state directory;
    // moat-jail writes the pid the host sees (jail.ts).
    "-qmp", `unix:${paths.qmpSocket},server=on,wait=off`,
    // append=on: the file is opened O_APPEND, so that a log trimmed under QEMU (log-dir.ts)
    // is written at its new end, not at QEMU's old offset.
    "-chardev", `file,id=console,path=${paths.consoleLog},append=on`,
    "-serial", "chardev:console",
    "-kernel", spec.kernelPath,
    "-append", kernelParams(spec).join(" "),
  ];
  if (spec.memoryFile) {
    args.push("-object", `memory-backend-file,id=ram,size=${spec.memoryMiB}M,mem-path=${spec.memoryFile.path},share=${spec.memoryFile.shared ? "on" : "off"}`);
  } else if (virtiofs) {
    args.push("-object", `memory-backend-memfd,id=ram,size=${spec.memoryMiB}M,share=on`);
  }
  if (virtiofs && mmio) {
    // Debian's C virtiofsd refuses legacy virtio ("virtio legacy devices aren't supported"),
    // which is what microvm's virtio-mmio transports offer unless told otherwise.
    args.push("-global", "virtio-mmio.force-legacy=false");
  }
  // The state comes later over QMP (migrate-incoming), from a unix socket: `exec:` would need
  // QEMU to spawn a process, which its seccomp sandbox (spawn=deny) forbids.
  if (spec.incoming) args.push("-incoming", "defer");
  if (spec.rootfs.kind === "image") {
    args.push(
      "-drive", `id=rootfs,file=${spec.rootfs.path},format=raw,if=none,readonly=on`,
      "-device", `${virtio("blk")},drive=rootfs,id=rootfs-blk`,
    );
  } else {
    args.push("-initrd", spec.rootfs.path);
  }
  if (virtiofs) {
    for (const share of spec.shares) {
      // The share's virtiofsd is already listening (storage/virtiofsd.ts); it enforces readOnly.
      args.push(
        "-chardev", `socket,id=fs-${share.tag},path=${virtiofsSocketPath(paths.socketDir, share.tag)}`,
        "-device", `${mmio ? "vhost-user-fs-device" : "vhost-user-fs-pci"},chardev=fs-${share.tag},tag=${share.tag},id=share-${share.tag}`,
      );
    }
  } else if (spec.sharedFs === "virtio-9p") {
    // One device for every share, whatever their number: the host bind-mounts each share into
    // the exported directory, read-only ones read-only, even after QEMU has started (QEMU
    // opens the export once and resolves names under it), so a VM restored ahead of time can
    // still be given its shares. multidevs=remap: the bind mounts are other file systems,
    // whose inode numbers would collide in the guest. security_model=none: files keep the
    // host's owners and modes, which is what a container image expects.
    // Two devices export the same directory: the guest caches one (cache=loose, the root file
    // system) and not the other (cache=mmap, shares the host may change under it); a virtio
    // 9p channel is mounted once, with one cache mode, so the two modes need two devices.
    if (spec.virtfsServer === "proxy") {
      // The files are served by virtfs-proxy-helper, one per device, each jailed by moat-jail
      // (its --9p-proxy), which hands QEMU its end of each socket pair after the taps. QEMU
      // 7.2's proxy backend takes no multidevs: inode numbers of different shares may collide.
      const firstFd = TAP_FIRST_FD + (spec.nics ?? []).filter((nic) => nic.tap !== undefined).length + throwawayTaps(spec);
      args.push(
        "-fsdev", `proxy,id=fs-shares,sock_fd=${firstFd}`,
        "-device", `${virtio("9p")},fsdev=fs-shares,mount_tag=${SHARES_9P_TAG},id=share-shares`,
        "-fsdev", `proxy,id=fs-live,sock_fd=${firstFd + 1}`,
        "-device", `${virtio("9p")},fsdev=fs-live,mount_tag=${SHARES_9P_LIVE_TAG},id=share-live`,
      );
    } else args.push(
      "-fsdev", `local,id=fs-shares,path=${paths.sharesDir},security_model=none,multidevs=remap`,
      "-device", `${virtio("9p")},fsdev=fs-shares,mount_tag=${SHARES_9P_TAG},id=share-shares`,
      "-fsdev", `local,id=fs-live,path=${paths.sharesDir},security_model=none,multidevs=remap`,
      "-device", `${virtio("9p")},fsdev=fs-live,mount_tag=${SHARES_9P_LIVE_TAG},id=share-live`,
    );
  }
  // Taps come as descriptors 3, 4, ... in NIC order (moat-tap-exec opened them in the
  // sandbox's network namespace), so QEMU needs no network privilege. guest_announce=off: after
  // an incoming migration QEMU has a guest that negotiated it announce itself (a config
  // interrupt and the guest's answer on the control queue, five rounds); a clone's interfaces
  // are set by the agent afterwards, so that is only work at the start, where it delayed the
  // guest's other work items (docs/templates.md, "the lost wakeup").
  // Every tap has a virtio-net header (moat-tap-exec opens them IFF_VNET_HDR; QEMU reads that
  // from a tap given by fd, and refuses vnet_hdr= beside fd=), so the NICs offer checksum and
  // segmentation offloads, and QEMU sets the tap's offloads
  // (TUNSETOFFLOAD) to what the guest took, after a restore too. A template being built has
  // throwaway taps instead (moat-jail's, after the kept descriptors): its NICs negotiate with
  // the same backend features its clones restore onto, which QEMU insists on ("saved image
  // requires vnet_hdr=on").
  let tapFd = TAP_FIRST_FD;
  let throwawayFd = TAP_FIRST_FD + (spec.nics ?? []).filter((nic) => nic.tap !== undefined).length;
  const throwaway = throwawayTaps(spec) > 0;
  for (const nic of spec.nics ?? []) {
    const fd = nic.tap !== undefined ? tapFd++ : throwaway ? throwawayFd++ : undefined;
    if (fd !== undefined) args.push("-netdev", `tap,id=net-${nic.id},fd=${fd}`);
    args.push("-device", `${virtio("net")},id=${nic.id},mac=${nic.mac},guest_announce=off${fd !== undefined ? `,netdev=net-${nic.id}` : ""}`);
  }
  args.push(
    "-device", `${virtio("serial")},id=serial0`,
    "-chardev", `socket,id=agent,path=${paths.agentSocket},server=on,wait=off`,
    "-device", "virtserialport,chardev=agent,name=agent.0,id=agent-port",
    "-chardev", `file,id=log,path=${paths.vmLog},append=on`,
    "-device", "virtserialport,chardev=log,name=log.0,id=log-port",
  );
  return args;
}

/** How many throwaway taps moat-jail makes for `spec`: a template's NICs, or a pool VM's, which have no tap of their own. */
export function throwawayTaps(spec: VmSpec): number {
  return spec.memoryFile?.shared === true || spec.throwawayTaps === true ? (spec.nics ?? []).filter((nic) => nic.tap === undefined).length : 0;
}

/** The command line quoted for a shell, for logs and `moat boot --dry-run`-style output. */
export function shellQuote(argv: string[]): string {
  return argv.map((arg) => (/^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, "'\\''")}'`)).join(" ");
}
