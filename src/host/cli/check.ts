// `moat check`: can this host run sandboxes, and how? Each line is one requirement with what
// was found and, where something is missing, the command that fixes it. The exit status is 0
// only if sandboxes can run.
import { constants, existsSync } from "node:fs";
import { access, mkdir, stat } from "node:fs/promises";
import { formatForUser, MoatError } from "../../shared/errors.js";
import { loadConfig, type Config } from "../config/index.js";
import { listTemplates, readyPoolVms, templateKey } from "../factory/index.js";
import { chooseAccelerator, qemuMachineTypes, qemuVersion } from "../hypervisor/index.js";
import { vmBase } from "../sandbox/index.js";
import { ShareServers } from "../storage/index.js";
import { guestKernelRelease } from "./guest-kernel-release.js";
import { withOverrides, type GlobalOptions } from "./global-options.js";

type Verdict = "ok" | "note" | "fail";

interface Finding {
  what: string;
  verdict: Verdict;
  detail: string;
  fix?: string;
}

const MARK: Record<Verdict, string> = { ok: "ok  ", note: "note", fail: "FAIL" };

export async function checkCommand(global: GlobalOptions): Promise<number> {
  let config: Config;
  try {
    config = withOverrides(loadConfig(global.config), global);
  } catch (error) {
    process.stdout.write(`${MARK.fail} configuration  ${formatForUser(error)}\n`);
    return 1;
  }
  const findings = [
    await checkQemu(config),
    await checkAccelerator(),
    await checkKernel(config),
    await checkRootfs(config),
    await checkStateRoot(config),
    checkShares(config),
    await checkTemplates(config),
    checkVsock(),
  ];
  for (const finding of findings) {
    process.stdout.write(`${MARK[finding.verdict]} ${finding.what.padEnd(14)} ${finding.detail}\n`);
    if (finding.fix) process.stdout.write(`     ${"".padEnd(14)} fix: ${finding.fix}\n`);
  }
  const failed = findings.filter((finding) => finding.verdict === "fail");
  process.stdout.write(
    failed.length === 0
      ? `sandboxes can run on this host (configuration: ${config.source ?? "built-in defaults"})\n`
      : `sandboxes cannot run on this host: ${failed.map((finding) => finding.what).join(", ")} missing\n`,
  );
  return failed.length === 0 ? 0 : 1;
}

async function checkQemu(config: Config): Promise<Finding> {
  const what = "QEMU";
  const fix = "apt-get install qemu-system-x86   (or: make setup)";
  let version: string;
  try {
    version = await qemuVersion(config.qemu.path);
  } catch {
    return { what, verdict: "fail", detail: `${config.qemu.path} does not run`, fix };
  }
  const machines = await qemuMachineTypes(config.qemu.path).catch((): string[] => []);
  if (!machines.includes(config.qemu.machineType)) {
    return { what, verdict: "fail", detail: `${config.qemu.path} ${version} has no machine type ${config.qemu.machineType}`, fix };
  }
  const offered = ["microvm", "q35"].filter((name) => machines.includes(name));
  return { what, verdict: "ok", detail: `${config.qemu.path} ${version}; machine ${config.qemu.machineType} (offers ${offered.join(", ")})` };
}

async function checkAccelerator(): Promise<Finding> {
  const choice = await chooseAccelerator();
  return choice.accelerator === "kvm"
    ? { what: "accelerator", verdict: "ok", detail: choice.reason }
    : { what: "accelerator", verdict: "note", detail: choice.reason };
}

async function checkKernel(config: Config): Promise<Finding> {
  const what = "guest kernel";
  if (!existsSync(config.qemu.kernel)) {
    return { what, verdict: "fail", detail: `${config.qemu.kernel} is not built`, fix: "make guest   (builds the kernel, about 5 minutes on 2 cores)" };
  }
  return { what, verdict: "ok", detail: `${config.qemu.kernel} (${(await guestKernelRelease(config.qemu.kernel)) ?? "release unknown"})` };
}

async function checkRootfs(config: Config): Promise<Finding> {
  const path = config.qemu.initrd ?? config.qemu.image ?? "";
  const what = config.qemu.initrd ? "guest initrd" : "guest image";
  const size = await stat(path).then((info) => info.size, () => undefined);
  if (size === undefined) return { what, verdict: "fail", detail: `${path} is not built`, fix: "make guest" };
  return { what, verdict: "ok", detail: `${path} (${Math.round(size / 1024 / 1024)} MiB)` };
}

async function checkStateRoot(config: Config): Promise<Finding> {
  const root = config.runtime.stateRoot;
  try {
    await mkdir(root, { recursive: true, mode: 0o711 });
    await access(root, constants.W_OK);
    return { what: "state root", verdict: "ok", detail: `${root} is writable` };
  } catch (error) {
    return { what: "state root", verdict: "fail", detail: `${root} is not writable (${(error as NodeJS.ErrnoException).code})`, fix: "run moat as root, or pass --root DIR" };
  }
}

/** Whether sandboxes start from a VM template here: one that was built and saved proves it. */
async function checkTemplates(config: Config): Promise<Finding> {
  const what = "VM templates";
  if (!config.factory.enableTemplate) return { what, verdict: "note", detail: "off ([factory] enable_template = false): every sandbox boots cold" };
  const current = await vmBase(config).then((base) => templateKey(base, config.qemu.path), () => undefined);
  const built = (await listTemplates(config)).find((template) => template.key === current);
  const poolSize = config.factory.vmCacheNumber + config.factory.vmCacheNetworked;
  const pool = poolSize > 0 ? `; warm pool of ${poolSize} (${(await readyPoolVms(config)).length} ready)` : "";
  return built
    ? { what, verdict: "ok", detail: `on; template ${built.key} saved ${built.created}, sandboxes restore from it${pool}` }
    : { what, verdict: "note", detail: "on; none built for this configuration yet: the first sandbox builds it", fix: "moat factory init   (builds it now and restores one VM to prove templates work here)" };
}

function checkShares(config: Config): Finding {
  const what = "shares";
  if (config.qemu.sharedFs === "virtio-9p") return { what, verdict: "ok", detail: "virtio-9p, served by QEMU itself" };
  try {
    ShareServers.check(config.qemu.sharedFs, config.qemu.virtioFsDaemon, config.source ?? "built-in configuration");
  } catch (error) {
    if (!(error instanceof MoatError)) throw error;
    return { what, verdict: "fail", detail: error.message, fix: error.hint };
  }
  return { what, verdict: "ok", detail: `virtio-fs, one ${config.qemu.virtioFsDaemon} per share (cache=${config.qemu.virtioFsCache})` };
}

function checkVsock(): Finding {
  return existsSync("/dev/vhost-vsock")
    ? { what: "vsock", verdict: "ok", detail: "/dev/vhost-vsock present; the agent channel uses virtio-serial" }
    : { what: "vsock", verdict: "note", detail: "no /dev/vhost-vsock; the agent channel uses virtio-serial, which needs none" };
}
