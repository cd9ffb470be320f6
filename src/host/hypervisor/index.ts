export type { Accelerator, GuestRootfs, MachineType, Share, SharedFs, Vm, VmExit, VmPaths, VmSpec } from "./hypervisor.js";
export { virtiofsSocketPath, vmPaths } from "./hypervisor.js";
export { chooseAccelerator, hostTscKhz, type AcceleratorChoice, type HostProbePaths } from "./accelerator.js";
export { tailOf } from "./file-tail.js";
export { QemuVm, describeExit, exitedError, type QemuStartOptions } from "./qemu/qemu.js";
export { QmpClient, type QmpEvent } from "./qemu/qmp.js";
export { qemuArgs, shellQuote } from "./qemu/cmdline.js";
export { kernelParams } from "./qemu/kernel-params.js";
export { qemuVersion, qemuMachineTypes } from "./qemu/version.js";
