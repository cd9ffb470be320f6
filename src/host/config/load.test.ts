import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { MoatError } from "../../shared/errors.js";
import { defaultConfig, loadConfig, parseConfig, parseVmmUser } from "./load.js";

function invalid(text: string, message: RegExp): void {
  assert.throws(
    () => parseConfig(text, "/etc/moat/configuration.toml"),
    (error: unknown) => error instanceof MoatError && error.code === "MOAT_CONFIG_INVALID" && message.test(error.message),
  );
}

test("an empty file gives the built-in defaults", () => {
  const config = parseConfig("", "/etc/moat/configuration.toml");
  assert.deepEqual({ ...config, source: undefined }, defaultConfig());
  assert.equal(config.source, "/etc/moat/configuration.toml");
});

test("Kata's key names set the hypervisor and agent", () => {
  const config = parseConfig(
    `
[hypervisor.qemu]
path = "/opt/qemu/bin/qemu-system-x86_64"
kernel = "/opt/moat/vmlinux"
initrd = "/opt/moat/initrd.cpio"
machine_type = "q35"
default_vcpus = 2
default_memory = 1024
default_maxvcpus = 4
default_maxmemory = 8192
kernel_params = " agent.log=debug  foo=bar "
enable_debug = true
shared_fs = "virtio-fs"
virtio_fs_daemon = "/opt/virtiofsd"
virtio_fs_cache = "never"
# keys moat does not know are ignored, as in a Kata file
enable_iommu = false

[agent.moat]
dial_timeout = 45

[runtime]
state_root = "/run/moat-test"
`,
    "/f.toml",
  );
  assert.equal(config.qemu.path, "/opt/qemu/bin/qemu-system-x86_64");
  assert.equal(config.qemu.initrd, "/opt/moat/initrd.cpio");
  assert.equal(config.qemu.image, undefined, "an initrd replaces the default image");
  assert.equal(config.qemu.machineType, "q35");
  assert.equal(config.qemu.defaultVcpus, 2);
  assert.equal(config.qemu.defaultMemoryMiB, 1024);
  assert.equal(config.qemu.defaultMaxVcpus, 4);
  assert.equal(config.qemu.defaultMaxMemoryMiB, 8192);
  assert.deepEqual(config.qemu.kernelParams, ["agent.log=debug", "foo=bar"]);
  assert.equal(config.qemu.enableDebug, true);
  assert.equal(config.qemu.sharedFs, "virtio-fs");
  assert.equal(config.qemu.virtioFsDaemon, "/opt/virtiofsd");
  assert.equal(config.qemu.virtioFsCache, "never");
  assert.equal(config.agent.dialTimeoutMs, 45_000);
  assert.equal(config.runtime.stateRoot, "/run/moat-test");
});

test("errors name the file, the key and the valid range", () => {
  invalid("[hypervisor.qemu]\ndefault_memory = \"lots\"", /configuration.toml: hypervisor.qemu.default_memory: must be an integer from 128 to 1048576 \(MiB\), got "lots"/);
  invalid("[hypervisor.qemu]\ndefault_vcpus = 0", /hypervisor.qemu.default_vcpus: must be an integer from 1 to 64/);
  invalid("[hypervisor.qemu]\ndefault_maxvcpus = -1", /hypervisor.qemu.default_maxvcpus: must be an integer from 0 to 64 \(vCPUs; 0 is the host's CPU count\), got -1/);
  invalid("[hypervisor.qemu]\ndefault_vcpus = 4\ndefault_maxvcpus = 2", /hypervisor.qemu.default_maxvcpus: must be 0 or at least default_vcpus \(4\), got 2/);
  invalid("[hypervisor.qemu]\ndefault_maxmemory = 256", /hypervisor.qemu.default_maxmemory: must be 0 or at least default_memory \(512 MiB\), got 256/);
  invalid("[hypervisor.qemu]\nkernel = \"vmlinux\"", /hypervisor.qemu.kernel: must be an absolute path, got "vmlinux"/);
  invalid("[hypervisor.qemu]\nmachine_type = \"pc\"", /machine_type: must be "microvm" or "q35", got "pc"/);
  invalid("[hypervisor.qemu]\nshared_fs = \"virtio-fs-nydus\"", /shared_fs: must be "virtio-fs" or "virtio-9p", got "virtio-fs-nydus"/);
  invalid("[hypervisor.qemu]\nvirtio_fs_cache = \"metadata\"", /virtio_fs_cache: must be "never", "auto" or "always", got "metadata"/);
  invalid("[hypervisor.qemu]\nvirtio_fs_daemon = \"virtiofsd\"", /virtio_fs_daemon: must be an absolute path/);
  invalid("[hypervisor.qemu]\nenable_debug = \"yes\"", /enable_debug: must be true or false/);
  invalid("[hypervisor.qemu]\nimage = \"/a\"\ninitrd = \"/b\"", /image and initrd are both set/);
  invalid("hypervisor = 3", /hypervisor: must be a table/);
  invalid("[factory]\nvm_cache_number = 65", /factory.vm_cache_number: must be an integer from 0 to 64 \(VMs\), got 65/);
  invalid("[factory]\nvm_cache_number = 2\nenable_template = false", /factory.vm_cache_number: needs enable_template = true/);
  invalid('[hypervisor.qemu]\nshared_fs = "virtio-fs"\n[factory]\nvm_cache_number = 1', /factory.vm_cache_number: needs shared_fs = "virtio-9p"/);
  invalid("[factory]\nvm_cache_networked = -1", /factory.vm_cache_networked: must be an integer from 0 to 64 \(VMs\), got -1/);
  invalid("[factory]\nvm_cache_networked = 1\nenable_template = false", /factory.vm_cache_networked: needs enable_template = true/);
  invalid("[hypervisor.qemu\n", /not valid TOML/);
});

test("the packaged config/configuration.toml parses to the defaults", async () => {
  const { readFileSync } = await import("node:fs");
  const { join } = await import("node:path");
  const { packageRoot } = await import("./package-root.js");
  const path = join(packageRoot(), "config", "configuration.toml");
  assert.deepEqual({ ...parseConfig(readFileSync(path, "utf8"), path), source: undefined }, defaultConfig());
});

test("a Kata configuration gives only the keys that mean the same in moat, never its paths", () => {
  const kata = `
[hypervisor.qemu]
path = "/opt/kata/bin/qemu-system-x86_64"
kernel = "/opt/kata/share/kata-containers/vmlinux.container"
image = "/opt/kata/share/kata-containers/kata-containers.img"
kernel_params = "systemd.unit=kata-containers.target"
machine_type = "q35"
default_vcpus = 2
default_memory = 2048
default_maxvcpus = 0
default_maxmemory = 4096
enable_debug = true
shared_fs = "virtio-fs"
virtio_fs_daemon = "/opt/kata/libexec/virtiofsd"
virtio_fs_cache = "metadata"

[agent.kata]
dial_timeout = 45

[runtime]
internetworking_model = "tcfilter"

[factory]
enable_template = false
template_path = "/run/vc/vm/template"
`;
  const config = parseConfig(kata, "/etc/kata-containers/configuration.toml");
  const defaults = defaultConfig();
  assert.deepEqual(config.qemu, { ...defaults.qemu, machineType: "q35", defaultVcpus: 2, defaultMemoryMiB: 2048, defaultMaxMemoryMiB: 4096, enableDebug: true, sharedFs: "virtio-fs" });
  assert.equal(config.agent.dialTimeoutMs, 45_000);
  assert.deepEqual(config.factory, { ...defaults.factory, enableTemplate: false });
  assert.equal(config.source, "/etc/kata-containers/configuration.toml");
});

test("a file read as Kata's that holds moat's own keys is refused, naming the key", () => {
  invalid("[agent.kata]\ndial_timeout = 60\n[runtime]\nstate_root = '/tmp/x'\n", /runtime\.state_root: a moat key in a file read as Kata's/);
  invalid("[agent.kata]\n[agent.moat]\ndial_timeout = 60\n", /agent\.moat: a moat key/);
  invalid("[agent.kata]\n[hypervisor.qemu]\nvirtfs_server = 'proxy'\n", /hypervisor\.qemu\.virtfs_server: a moat key/);
});

test("a Kata configuration's values are still checked", () => {
  invalid("[hypervisor.qemu]\ndefault_memory = 64\n[agent.kata]\n", /hypervisor\.qemu\.default_memory: must be an integer from 128/);
});

test("with no file of moat's, Kata's is read; moat's own comes first", () => {
  const dir = mkdtempSync(join(tmpdir(), "moat-config-"));
  try {
    const moat = join(dir, "moat.toml");
    const kata = join(dir, "kata.toml");
    writeFileSync(kata, "[hypervisor.qemu]\ndefault_vcpus = 3\n[agent.kata]\n");
    const saved = process.env.MOAT_CONFIG;
    delete process.env.MOAT_CONFIG;
    try {
      assert.equal(loadConfig(undefined, [moat, kata]).qemu.defaultVcpus, 3);
      writeFileSync(moat, "[hypervisor.qemu]\ndefault_vcpus = 4\n");
      assert.equal(loadConfig(undefined, [moat, kata]).qemu.defaultVcpus, 4);
      rmSync(moat);
      rmSync(kata);
      assert.equal(loadConfig(undefined, [moat, kata]).source, undefined);
    } finally {
      if (saved !== undefined) process.env.MOAT_CONFIG = saved;
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("runtime.socket_root: read, and refused where its sockets would not fit in a unix socket path", () => {
  assert.equal(parseConfig('[runtime]\nsocket_root = "/run/s"\n', "/etc/moat/configuration.toml").runtime.socketRoot, "/run/s");
  invalid(`[runtime]\nsocket_root = "/${"s".repeat(69)}"\n`, /configuration.toml: runtime.socket_root: must be at most 69 bytes long \(unix socket paths allow 107\), got 70/);
  invalid('[runtime]\nsocket_root = "relative"\n', /runtime.socket_root/);
});

test("hypervisor.qemu.virtfs_server: qemu (the default) or proxy", () => {
  assert.equal(parseConfig("", "c.toml").qemu.virtfsServer, "qemu");
  assert.equal(parseConfig('[hypervisor.qemu]\nvirtfs_server = "proxy"\n', "c.toml").qemu.virtfsServer, "proxy");
  assert.throws(() => parseConfig('[hypervisor.qemu]\nvirtfs_server = "local"\n', "c.toml"), /virtfs_server: must be "qemu" or "proxy", got "local"/);
});

test("hypervisor.qemu.vmm_user: UID:GID or a user name from passwd; root, unknown names and nonsense are refused", () => {
  const passwd = "root:x:0:0:root:/root:/bin/bash\nmoat-vmm:x:990:991::/nonexistent:/usr/sbin/nologin\n";
  assert.deepEqual(parseVmmUser("moat-vmm", passwd), { uid: 990, gid: 991 });
  assert.deepEqual(parseVmmUser("65534:65534", passwd), { uid: 65534, gid: 65534 });
  for (const bad of ["root", "0:0", "65534:0", "nobody-here", "-1:5", "1:2:3", "99999999999:1"]) assert.equal(parseVmmUser(bad, passwd), undefined, bad);
  assert.throws(() => parseConfig('[hypervisor.qemu]\nvmm_user = "0:0"\n', "c.toml"), /c\.toml: hypervisor\.qemu\.vmm_user: must be a user name in \/etc\/passwd or UID:GID \(neither 0\), got "0:0"/);
  assert.deepEqual(parseConfig('[hypervisor.qemu]\nvmm_user = "1234:1234"\n', "c.toml").qemu.vmmUser, { uid: 1234, gid: 1234 });
  assert.equal(parseConfig('[hypervisor.qemu]\nvmm_user = ""\n', "c.toml").qemu.vmmUser, undefined);
});
