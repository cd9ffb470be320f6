// Which accelerator can run a standard guest kernel on this host: KVM where it really can,
// TCG (QEMU's software emulation) otherwise, with the reason in plain words.
//
// /dev/kvm alone proves little: on some cloud hosts it is PVM-flavoured KVM (the kvm_pvm
// module), which runs only PVM-enabled guest kernels; a standard kernel hangs right after
// the decompressor (measured, ARCHITECTURE.md). moat's guest kernel is standard.
import { constants } from "node:fs";
import { access, readFile } from "node:fs/promises";
import type { Accelerator } from "./hypervisor.js";

export interface AcceleratorChoice {
  accelerator: Accelerator;
  /** Why: "KVM (kvm_intel)" or what rules KVM out. */
  reason: string;
}

/** Paths read, so that tests can point them at a fake /sys and /dev. */
export interface HostProbePaths {
  devKvm: string;
  sysModule: string;
}

const defaultPaths: HostProbePaths = { devKvm: "/dev/kvm", sysModule: "/sys/module" };

export async function chooseAccelerator(paths: HostProbePaths = defaultPaths): Promise<AcceleratorChoice> {
  const tcg = (why: string): AcceleratorChoice => ({ accelerator: "tcg", reason: `${why}; using TCG (software emulation, several times slower)` });
  if (!(await exists(paths.devKvm))) {
    return tcg(`${paths.devKvm} does not exist (no hardware virtualisation, KVM not loaded, or nested virtualisation off in this VM)`);
  }
  if (await exists(`${paths.sysModule}/kvm_pvm`)) {
    return tcg(`${paths.devKvm} is PVM-flavoured KVM (module kvm_pvm), which boots only PVM-enabled guest kernels`);
  }
  const vendor = (await exists(`${paths.sysModule}/kvm_intel`)) ? "kvm_intel" : (await exists(`${paths.sysModule}/kvm_amd`)) ? "kvm_amd" : undefined;
  if (!vendor) return tcg(`${paths.devKvm} exists but neither kvm_intel nor kvm_amd is loaded`);
  try {
    await access(paths.devKvm, constants.R_OK | constants.W_OK);
  } catch (error) {
    return tcg(`${paths.devKvm} cannot be opened for reading and writing (${(error as NodeJS.ErrnoException).code})`);
  }
  const nested = await readFile(`${paths.sysModule}/${vendor}/parameters/nested`, "utf8").catch(() => "");
  return { accelerator: "kvm", reason: `KVM (${vendor}${nested.trim() === "Y" || nested.trim() === "1" ? ", nested available" : ""})` };
}

/** The host TSC frequency in kHz, from /proc/cpuinfo ("cpu MHz : 2300.000"), if known. */
export async function hostTscKhz(cpuinfoPath = "/proc/cpuinfo"): Promise<number | undefined> {
  const cpuinfo = await readFile(cpuinfoPath, "utf8").catch(() => "");
  const match = /^cpu MHz\s*:\s*([\d.]+)$/m.exec(cpuinfo);
  return match ? Math.round(Number(match[1]) * 1000) : undefined; // group 1 exists when the pattern matched
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}
