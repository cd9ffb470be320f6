import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { chooseAccelerator, hostTscKhz } from "./accelerator.js";

const root = mkdtempSync(join(tmpdir(), "moat-accel-"));
after(() => rmSync(root, { recursive: true, force: true }));

/** A fake host: `modules` under sys/module, and /dev/kvm if `kvm`. */
function host(name: string, modules: string[], kvm: boolean) {
  const dir = join(root, name);
  mkdirSync(join(dir, "sys", "module"), { recursive: true });
  for (const module of modules) mkdirSync(join(dir, "sys", "module", module, "parameters"), { recursive: true });
  if (kvm) writeFileSync(join(dir, "kvm"), "");
  return { devKvm: join(dir, "kvm"), sysModule: join(dir, "sys", "module") };
}

test("no /dev/kvm means TCG, and says why", async () => {
  const choice = await chooseAccelerator(host("none", [], false));
  assert.equal(choice.accelerator, "tcg");
  assert.match(choice.reason, /does not exist/);
});

test("PVM-flavoured KVM is not used for a standard guest kernel", async () => {
  const choice = await chooseAccelerator(host("pvm", ["kvm", "kvm_pvm"], true));
  assert.equal(choice.accelerator, "tcg");
  assert.match(choice.reason, /PVM-flavoured KVM \(module kvm_pvm\)/);
});

test("kvm_intel with a usable /dev/kvm means KVM", async () => {
  const paths = host("intel", ["kvm", "kvm_intel"], true);
  writeFileSync(join(paths.sysModule, "kvm_intel", "parameters", "nested"), "Y\n");
  const choice = await chooseAccelerator(paths);
  assert.equal(choice.accelerator, "kvm");
  assert.equal(choice.reason, "KVM (kvm_intel, nested available)");
});

test("/dev/kvm without a vendor module is not trusted", async () => {
  const choice = await chooseAccelerator(host("odd", ["kvm"], true));
  assert.equal(choice.accelerator, "tcg");
});

test("the host TSC frequency comes from /proc/cpuinfo", async () => {
  const cpuinfo = join(root, "cpuinfo");
  writeFileSync(cpuinfo, "processor\t: 0\ncpu MHz\t\t: 2300.000\n");
  assert.equal(await hostTscKhz(cpuinfo), 2_300_000);
  assert.equal(await hostTscKhz(join(root, "missing")), undefined);
});
