import assert from "node:assert/strict";
import { test } from "node:test";
import { virtiofsdCommand, type VirtiofsdOptions } from "./virtiofsd.js";

function options(change: Partial<VirtiofsdOptions> = {}): VirtiofsdOptions {
  return { binary: "/usr/lib/qemu/virtiofsd", tag: "m1", source: "/data", readOnly: false, cache: "auto", stateDir: "/run/moat/s1", socketDir: "/run/moat-sockets/0123456789abcdef0123", ...change };
}

test("virtiofsd starts in a private mount namespace, one pid from unshare to virtiofsd", () => {
  const { command, args } = virtiofsdCommand(options());
  assert.equal(command, "/usr/bin/unshare");
  assert.deepEqual(args.slice(0, 5), ["--mount", "--propagation", "private", "--", "/bin/sh"]);
  const script = args[6] ?? "";
  assert.match(script, /mount -t tmpfs .* \/run\/virtiofsd/, "its pid lock files stay in the namespace");
  assert.match(script, /exec "\$@"/, "sh execs virtiofsd: the pid moat records is virtiofsd's");
  assert.deepEqual(args.slice(8, 12), ["rw", "/data", "/run/moat/s1/virtiofsd-m1.pid", "/usr/lib/qemu/virtiofsd"]);
  assert.match(script, /echo \$\$ > "\$3"/, "it writes its own pid file, even if moatd dies right after spawning it");
});

test("its socket is where QEMU looks, and it keeps its own sandbox with fewer capabilities", () => {
  const { args } = virtiofsdCommand(options());
  assert.ok(args.includes("--socket-path=/run/moat-sockets/0123456789abcdef0123/vfs-m1.sock"));
  assert.ok(args.includes("source=/data"));
  assert.ok(args.includes("sandbox=namespace"));
  assert.ok(args.includes("modcaps=-mknod:-setfcap"));
});

test("a read-only share is bind-mounted read-only over itself before virtiofsd serves it", () => {
  const { args } = virtiofsdCommand(options({ readOnly: true }));
  assert.deepEqual(args.slice(8, 10), ["ro", "/data"]);
  assert.match(args[6] ?? "", /if \[ "\$1" = ro \]; then mount --bind -o ro "\$2" "\$2"; fi/);
});

test("Kata's cache names map to the C virtiofsd's", () => {
  assert.ok(virtiofsdCommand(options({ cache: "never" })).args.includes("cache=none"));
  assert.ok(virtiofsdCommand(options({ cache: "always" })).args.includes("cache=always"));
});
