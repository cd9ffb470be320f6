// bench/fs-checks: test/support/fs-checks.c (issue 15's everyday file operations, and with
// --attacks issue 13's privilege attacks) inside a container, on its root file system and on
// a bind-mounted volume, for each of moat's share modes beside runc and gVisor, in one table.
// Not timed: what it shows is which operations work where (docs/storage.md).
//
//   node dist/bench/fs-checks.js [--attacks] [--variant NAME]...
//
// Each moat variant is a configuration ([hypervisor.qemu] and [factory] settings); templates
// are on unless the variant says otherwise, as in the built-in configuration.
import { spawnSync } from "node:child_process";
import { chmodSync, copyFileSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { repoRoot } from "../test/integration/harness/moat-cli.js";
import { busyboxBundle } from "./support/baselines.js";

const { values } = parseArgs({ options: { attacks: { type: "boolean", default: false }, variant: { type: "string", multiple: true } } });
const work = mkdtempSync(join(tmpdir(), "moat-bench-fs-checks-"));
const moat = join(repoRoot, "bin", "moat");
const checks = join(repoRoot, "dist", "test", "bin", "moat-fs-checks");

/** moat's variants by their configuration; the others are runc and gVisor. */
const MOAT_VARIANTS: Record<string, string> = {
  "9p (default)": '[hypervisor.qemu]\nshared_fs = "virtio-9p"\n',
  "9p no template": '[hypervisor.qemu]\nshared_fs = "virtio-9p"\n[factory]\nenable_template = false\n',
  "virtio-fs": '[hypervisor.qemu]\nshared_fs = "virtio-fs"\n',
};
/**
 * The root file system as an overlay whose upper layer is guest memory (what moat does for
 * its built-in image): the program comes in on stdin, as the image has no volume option.
 * Its volume column is empty.
 */
const GUEST_OVERLAY = "guest overlay (image)";
const ALL = [...Object.keys(MOAT_VARIANTS), GUEST_OVERLAY, "runc", "gVisor"];
const chosen = values.variant ?? ALL;

/** Enough for the checks (chown, mknod, set-id bits) and for the attacks of a root guest. */
const CAPABILITIES = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_MKNOD", "CAP_SETUID", "CAP_SETGID", "CAP_KILL", "CAP_SYS_ADMIN"];

function bundle(dir: string, marker: string): { bundle: string; volume: string } {
  const script = values.attacks
    ? `MOAT_ATTACK_HOST_FILE=${marker} /fs-checks attacks /checks; echo ===; MOAT_ATTACK_HOST_FILE=${marker} /fs-checks attacks /vol`
    : "/fs-checks checks /checks; echo ===; /fs-checks checks /vol";
  busyboxBundle(dir, ["sh", "-c", script]);
  copyFileSync(checks, join(dir, "rootfs", "fs-checks"));
  chmodSync(join(dir, "rootfs", "fs-checks"), 0o755);
  mkdirSync(join(dir, "rootfs", "checks"));
  mkdirSync(join(dir, "rootfs", "vol"));
  const volume = join(dir, "volume");
  mkdirSync(volume);
  const configPath = join(dir, "config.json");
  // runc spec's output, changed where the checks need it.
  const config = JSON.parse(readFileSync(configPath, "utf8")) as {
    root: { readonly: boolean };
    process: { capabilities: Record<string, string[]> };
    mounts: { destination: string; type: string; source: string; options: string[] }[];
  };
  config.root.readonly = false;
  config.process.capabilities = { bounding: CAPABILITIES, effective: CAPABILITIES, permitted: CAPABILITIES };
  config.mounts.push({ destination: "/vol", type: "bind", source: volume, options: ["rbind", "rw"] });
  writeFileSync(configPath, JSON.stringify(config));
  return { bundle: dir, volume };
}

function runVariant(variant: string, dir: string): string {
  const settings = MOAT_VARIANTS[variant];
  let result;
  if (variant === GUEST_OVERLAY) {
    const mode = values.attacks ? "attacks" : "checks";
    const script = `cat > /fs-checks && chmod 755 /fs-checks && mkdir /checks && /fs-checks ${mode} /checks; echo ===`;
    result = spawnSync(moat, ["--root", join(work, "moat"), "run", "--rm", "-i", "busybox", "sh", "-c", script], { input: readFileSync(checks), encoding: "utf8" });
  } else if (settings !== undefined) {
    const config = join(work, `${dir.split("/").pop()}.toml`);
    writeFileSync(config, settings);
    result = spawnSync(moat, ["--root", join(work, "moat"), "--config", config, "run", "--bundle", dir], { encoding: "utf8" });
  } else if (variant === "runc") {
    result = spawnSync("runc", ["--root", join(work, "runc"), "run", "--bundle", dir, `fs-checks-${process.pid}`], { encoding: "utf8" });
  } else {
    result = spawnSync("runsc", ["--root", join(work, "runsc"), "--platform=ptrace", "--network=none", "run", "--bundle", dir, `fs-checks-${process.pid}`], { encoding: "utf8" });
  }
  if (result.status !== 0) throw new Error(`${variant}: exit ${result.status}: ${result.stderr.trim()}`);
  return result.stdout;
}

/** What the host sees of the attacks' files: set-id bits, device nodes, owners. */
function hostSide(dir: string): string {
  return readdirSync(dir)
    .filter((name) => name.startsWith("attack-"))
    .map((name) => {
      const st = lstatSync(join(dir, name));
      const kind = st.isCharacterDevice() ? "chr" : st.isBlockDevice() ? "blk" : st.isSymbolicLink() ? "lnk" : st.isFile() ? "reg" : "other";
      return `${name}=${kind},${(st.mode & 0o7777).toString(8)},${st.uid}:${st.gid}`;
    })
    .join(" ");
}

const marker = join(work, "host-secret");
writeFileSync(marker, "host-secret\n");
const table: Record<string, Record<string, string>> = {};
for (const variant of chosen) {
  const dir = join(work, variant.replace(/\W+/g, "-"));
  const { volume } = bundle(dir, marker);
  let out: string;
  try {
    out = runVariant(variant, dir);
  } catch (error) {
    process.stdout.write(`${variant}: ${error instanceof Error ? error.message : String(error)}\n`);
    continue;
  }
  const [root = "", vol = ""] = out.split("===\n");
  for (const [where, text] of [["rootfs", root], ["volume", vol]] as const) {
    for (const line of text.trim().split("\n")) {
      const [name = "", verdict = "", ...rest] = line.split(" ");
      (table[`${name}`] ??= {})[`${variant} ${where}`] = verdict === "pass" || verdict === "done" ? verdict : `${verdict} ${rest.join(" ")}`;
    }
  }
  process.stdout.write(`## ${variant}\n${out}`);
  if (values.attacks) process.stdout.write(`host rootfs: ${hostSide(join(dir, "rootfs", "checks"))}\nhost volume: ${hostSide(volume)}\n`);
}
process.stdout.write(`\n${JSON.stringify(table, null, 1)}\n`);
// Removed only when nothing is mounted under it: a recursive delete through a share's bind
// mount left by a failed run would delete the volume's source.
if (readFileSync("/proc/self/mountinfo", "utf8").includes(work)) process.stdout.write(`left in place (a mount remains under it): ${work}\n`);
else rmSync(work, { recursive: true, force: true });
