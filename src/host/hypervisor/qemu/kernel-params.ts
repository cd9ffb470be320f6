// The guest kernel command line. Order matters: later parameters win, so the configured
// extra parameters come last.
import { WARM_UP_KERNEL_PARAM } from "../../../shared/protocol/index.js";
import type { VmSpec } from "../hypervisor.js";

/** The guest kernel's tick rate (CONFIG_HZ_250 in image/kernel/moat.config). */
const GUEST_HZ = 250;

export function kernelParams(spec: VmSpec): string[] {
  const params = [
    "console=ttyS0",
    // The agent exiting makes moat-init reset the VM, a panic resets it at once, and QEMU runs
    // with -no-reboot, so either way the QEMU process exits instead of hanging. A triple
    // fault (reboot=t) resets every machine type; microvm has no keyboard controller or ACPI reset.
    "panic=-1",
    "reboot=t",
    // Node blocks in getrandom() until the CRNG is seeded; trusting RDRAND saves ~1.3 s.
    "random.trust_cpu=on",
    "cgroup_no_v1=all",
  ];
  if (!spec.debug) params.push("quiet");
  // A VM whose RAM is written to a shared file is being made into a template: its agent runs
  // one container before it serves, so that clones start warm. Its clones are started with the
  // parameter absent, which is harmless: the guest read its command line when the template booted.
  if (spec.memoryFile?.shared) params.push(WARM_UP_KERNEL_PARAM);
  if (spec.rootfs.kind === "image") params.push("root=/dev/vda", "ro", "rootfstype=erofs", "init=/sbin/moat-init");
  else params.push("rdinit=/sbin/moat-init");
  // Which of the agent's V8 snapshots fits this guest's CPU (moat-init reads it; the kernel
  // hands a key=value parameter without a dot to init as environment).
  if (spec.accelerator === "tcg") params.push("MOAT_ACCEL=tcg");
  if (spec.accelerator === "tcg" && spec.hostTscKhz) {
    // Under TCG, calibrating the TSC and the delay loop dominates boot: give the answers.
    // Not noapictimer: measured here, a guest booted with it never wakes from a timed sleep
    // (sleep(1) in a container, the agent's timers) although the PIT is on.
    params.push(`tsc_early_khz=${spec.hostTscKhz}`, `lpj=${Math.round((spec.hostTscKhz * 1000) / GUEST_HZ)}`);
  }
  return [...params, ...spec.extraKernelParams];
}
