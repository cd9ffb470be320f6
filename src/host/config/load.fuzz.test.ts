// Fuzz target "config-toml" (test/support/fuzz.ts): the configuration file is the admin's,
// but it is read by moatd and by every `moat` command, so a file of any bytes must end in a
// Config or in MOAT_CONFIG_INVALID naming the file, never in another exception. Documents are
// moat's and Kata's keys (and others) holding values of every TOML type, then mutated.
import { test } from "node:test";
import fc from "fast-check";
import { stringify } from "smol-toml";
import { bytesNear, expectMoatError, fuzzTarget } from "../../../test/support/fuzz.js";
import { parseConfig } from "./load.js";

const KEYS = [
  "agent.moat.dial_timeout", "factory.enable_template", "factory.template_path", "factory.vm_cache_number",
  "hypervisor.qemu.default_maxmemory", "hypervisor.qemu.default_maxvcpus", "hypervisor.qemu.default_memory", "hypervisor.qemu.default_vcpus",
  "hypervisor.qemu.enable_debug", "hypervisor.qemu.image", "hypervisor.qemu.initrd", "hypervisor.qemu.kernel", "hypervisor.qemu.kernel_params",
  "hypervisor.qemu.machine_type", "hypervisor.qemu.path", "hypervisor.qemu.shared_fs", "hypervisor.qemu.virtio_fs_cache",
  "hypervisor.qemu.virtio_fs_daemon", "hypervisor.qemu.virtfs_server", "hypervisor.qemu.vmm_user", "runtime.socket_root", "runtime.state_root",
  // Kata's spellings and tables (a Kata file is read too), and keys nobody knows.
  "hypervisor.qemu.shared_fs", "agent.kata.dial_timeout", "runtime.internetworking_model", "hypervisor.qemu.valid_hypervisor_paths", "x.y",
];

const value = fc.oneof(
  fc.integer(), fc.constantFrom(0, -1, 2 ** 53, 1e308, 128, 64, 600), fc.double({ noNaN: false }), fc.boolean(), fc.string({ maxLength: 30 }),
  fc.constantFrom("/", "/usr/bin/qemu-system-x86_64", "virtio-fs", "virtio-9p", "microvm", "q35", "0:0", "65534:65534", "root", "a b", "x".repeat(5000)),
  fc.date({ noInvalidDate: true }), fc.array(fc.string({ maxLength: 5 }), { maxLength: 3 }), fc.dictionary(fc.string({ maxLength: 5 }), fc.integer(), { maxKeys: 2 }),
);

/** A table tree with `value`s at some of KEYS (a key's table may itself be a value: "hypervisor = 5"). */
const document = fc.array(fc.tuple(fc.constantFrom(...KEYS), value, fc.nat({ max: 2 })), { maxLength: 8 }).map((entries) => {
  const root: Record<string, unknown> = {};
  for (const [key, item, cut] of entries) {
    const parts = key.split(".");
    const depth = Math.max(1, parts.length - cut); // sometimes a value where a table belongs
    let table = root;
    for (const part of parts.slice(0, depth - 1)) {
      const next = table[part];
      if (typeof next !== "object" || next === null || Array.isArray(next) || next instanceof Date) table[part] = {};
      table = table[part] as Record<string, unknown>; // made a table just above
    }
    table[parts[depth - 1]!] = item; // depth ≥ 1
  }
  return root;
});

const inputs = bytesNear(
  document.map((tree) => {
    try {
      return Buffer.from(stringify(tree));
    } catch {
      return Buffer.from("[hypervisor.qemu]\npath = 5\n"); // a tree TOML cannot write (a number as big as no TOML integer)
    }
  }),
);

function check(input: Buffer): void {
  try {
    parseConfig(input.toString("utf8"), "/etc/moat/fuzz.toml");
  } catch (error) {
    expectMoatError(error, ["MOAT_CONFIG_INVALID"]);
  }
}

test("fuzz config-toml: any file ends in a Config or in MOAT_CONFIG_INVALID", async () => {
  await fuzzTarget("config-toml", inputs, check, 3000);
});
