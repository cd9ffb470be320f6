import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { MoatError } from "../../shared/errors.js";
import { defaultSpec } from "./default-spec.js";
import { loadBundle } from "./bundle.js";
import { guestSpec, withoutNetworkNamespace } from "./guest-spec.js";

const root = mkdtempSync(join(tmpdir(), "moat-bundle-"));
after(() => rmSync(root, { recursive: true, force: true }));

/** A bundle whose config.json is the default spec changed by `change` (or the raw `text`). */
function bundle(name: string, change: (spec: Record<string, any>) => void = () => undefined, text?: string): string {
  const dir = join(root, name);
  mkdirSync(join(dir, "rootfs"), { recursive: true });
  const spec = defaultSpec({ args: ["sh"], env: [], cwd: "/", hostname: "h" }) as Record<string, any>; // a test edits fields freely
  change(spec);
  writeFileSync(join(dir, "config.json"), text ?? JSON.stringify(spec));
  return dir;
}

function invalid(dir: string, message: RegExp): void {
  assert.throws(
    () => loadBundle(dir),
    (error: unknown) => error instanceof MoatError && error.code === "MOAT_BUNDLE_INVALID" && message.test(error.message),
  );
}

test("a good bundle loads, with root.path made absolute", () => {
  const dir = bundle("good");
  const loaded = loadBundle(dir);
  assert.equal(loaded.rootfs, join(dir, "rootfs"));
  assert.deepEqual(loaded.spec.process.args, ["sh"]);
});

test("each malformed field is named with its file", () => {
  invalid(join(root, "missing"), /missing\/config.json: cannot read/);
  invalid(bundle("not-json", undefined, "{"), /not-json\/config.json: not valid JSON/);
  invalid(bundle("no-args", (spec) => (spec.process.args = [])), /no-args\/config.json: process.args: must be a non-empty array of strings/);
  invalid(bundle("bad-args", (spec) => (spec.process.args = ["sh", 3])), /process.args: must be a non-empty array of strings/);
  invalid(bundle("relative-cwd", (spec) => (spec.process.cwd = "tmp")), /process.cwd: must be an absolute path, got "tmp"/);
  invalid(bundle("bad-env", (spec) => (spec.process.env = "PATH=/bin")), /process.env: must be an array, got "PATH=\/bin"/);
  invalid(bundle("no-root", (spec) => (spec.root.path = "nowhere")), /root.path: .*nowhere is not a directory/);
  invalid(bundle("bad-version", (spec) => delete spec.ociVersion), /ociVersion: is required/);
  invalid(bundle("bad-mount", (spec) => spec.mounts.push({ destination: "data" })), /mounts\[7\]\.destination: must be an absolute path, got "data"/);
  invalid(bundle("bad-options", (spec) => spec.mounts.push({ destination: "/d", options: "ro" })), /mounts\[7\]\.options: must be an array, got "ro"/);
  invalid(bundle("bind-missing", (spec) => spec.mounts.push({ destination: "/x", type: "bind", source: join(root, "nope") })), /bind-missing\/config.json: mounts\[7\]\.source: .*nope does not exist/);
  invalid(bundle("bind-no-source", (spec) => spec.mounts.push({ destination: "/x", options: ["rbind"] })), /mounts\[7\]\.source: a bind mount needs a source/);
});

test("the guest spec points root and directory bind mounts at their shares", () => {
  const data = join(root, "data");
  mkdirSync(data);
  const dir = bundle("binds", (spec) => {
    spec.root.readonly = true;
    spec.mounts.push({ destination: "/data", type: "bind", source: data, options: ["rbind", "ro"] });
    spec.mounts.push({ destination: "/work", type: "bind", source: data, options: ["rbind", "rw"] });
  });
  const { spec, shares } = guestSpec({ containerId: "c1", spec: loadBundle(dir).spec, rootfs: join(dir, "rootfs"), overlay: false, where: "test", filesDir: "/state/c1/files" });
  assert.deepEqual(spec.root, { path: "/run/moat/containers/c1/shares/s0", readonly: true });
  assert.equal(spec.mounts?.[7]?.source, "/run/moat/containers/c1/shares/s1");
  assert.equal(spec.mounts?.[0]?.source, "proc", "other mounts are made in the guest as they are");
  assert.deepEqual(shares, [
    { tag: "s0", hostPath: join(dir, "rootfs"), readOnly: true, overlay: true, live: false }, // root.readonly holds on the host too; crun's mount points land in the overlay
    { tag: "s1", hostPath: data, readOnly: true, overlay: false, live: true }, // kubelet updates read-only volumes (ConfigMaps) under the container
    { tag: "s2", hostPath: data, readOnly: false, overlay: false, live: false }, // a read-write volume stays cached: stat and inotify as on the root
  ]);
});

test("a single-file bind mount becomes a bind of the file itself in the sandbox's files share", () => {
  const file = join(root, "hosts");
  writeFileSync(file, "127.0.0.1 localhost\n");
  const dir = bundle("file-bind", (spec) => spec.mounts.push({ destination: "/etc/hosts", type: "bind", source: file, options: ["rbind", "ro"] }));
  const { spec, shares, files } = guestSpec({ containerId: "c1", spec: loadBundle(dir).spec, rootfs: join(dir, "rootfs"), overlay: false, where: "test", filesDir: "/state/c1/files" });
  assert.deepEqual(files, [{ name: "7-hosts", source: file, readOnly: true }]);
  assert.equal(spec.mounts?.[7]?.source, "/run/moat/containers/c1/shares/s1/7-hosts");
  assert.deepEqual(shares[1], { tag: "s1", hostPath: "/state/c1/files", readOnly: false, overlay: false, live: true });
});

test("a bind mount's relative source is the bundle's, as the spec says", () => {
  const dir = bundle("relative-bind", (spec) => spec.mounts.push({ destination: "/x", type: "bind", source: "data" }));
  mkdirSync(join(dir, "data"));
  assert.equal(loadBundle(dir).spec.mounts?.[7]?.source, join(dir, "data"));
});

test("guestSpec still refuses bind mounts of missing and relative sources (a spec that did not come from loadBundle)", () => {
  const refuse = (source: string, message: RegExp) => {
    const spec = defaultSpec({ args: ["sh"], env: [], cwd: "/", hostname: "h" });
    spec.mounts?.push({ destination: "/x", type: "bind", source });
    assert.throws(() => guestSpec({ containerId: "c1", spec, rootfs: root, overlay: false, where: "b/config.json", filesDir: "/state/c1/files" }), message);
  };
  refuse(join(root, "nope"), /b\/config.json: mounts\[7\]: source .*nope does not exist/);
  refuse("relative", /mounts\[7\]: source must be an absolute path/);
});

test("an image's root is shared read-only under an overlay", () => {
  const { shares } = guestSpec({ containerId: "c1", spec: defaultSpec({ args: ["sh"], env: [], cwd: "/", hostname: "h" }), rootfs: "/images/busybox", overlay: true, where: "image busybox", filesDir: "/state/c1/files" });
  assert.deepEqual(shares, [{ tag: "s0", hostPath: "/images/busybox", readOnly: true, overlay: true, live: false }]);
});

test("Docker's spec: host hooks are not given to the guest, its unset resources are dropped (guest-resources.ts)", () => {
  const docker = bundle("docker-spec", (spec) => {
    spec.hooks = { prestart: [{ path: "/proc/1234/exe", args: ["libnetwork-setkey", "-exec-root=/run/docker", "c1", "abc"] }] };
    spec.linux.resources = { memory: { disableOOMKiller: false }, cpu: { shares: 0 }, blockIO: { weight: 0 } };
  });
  const { spec } = guestSpec({ containerId: "c1", spec: loadBundle(docker).spec, rootfs: join(docker, "rootfs"), overlay: false, where: "test", filesDir: "/state/c1/files" });
  assert.equal(spec.hooks, undefined);
  assert.deepEqual((spec.linux as { resources: object }).resources, { memory: { disableOOMKiller: false } });
});

test("createContainer and startContainer hooks go to the guest; the host's four do not; a network entry without a path asks for a new namespace", () => {
  const hook = { path: "/bin/hook" };
  const dir = bundle("guest-hooks", (spec) => {
    spec.hooks = { prestart: [hook], createRuntime: [hook], createContainer: [hook], startContainer: [hook], poststart: [hook], poststop: [hook] };
    spec.linux.namespaces = [{ type: "pid" }, { type: "uts" }, { type: "network" }];
  });
  const guest = guestSpec({ containerId: "c1", spec: loadBundle(dir).spec, rootfs: join(dir, "rootfs"), overlay: false, where: "test", filesDir: "/state/c1/files" });
  assert.deepEqual(guest.spec.hooks, { createContainer: [hook], startContainer: [hook] });
  assert.equal(guest.newNetworkNamespace, true);
  assert.equal(guest.networkNamespace, undefined);
  assert.deepEqual((withoutNetworkNamespace(guest.spec).linux as { namespaces: unknown[] }).namespaces, [{ type: "pid" }, { type: "uts" }]);
});
