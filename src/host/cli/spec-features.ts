// `spec` and `features`, as runc has them: a starting config.json, and what this runtime
// supports (runtime-spec features.md), for callers that ask before they create.
import { existsSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { MoatError } from "../../shared/errors.js";
import { Code } from "../../shared/ttrpc/index.js";
import { defaultSpec } from "../oci/index.js";

/** `spec`: writes a config.json for a busybox-style root in `bundle` (default: here); never overwrites. */
export function specCommand(options: { bundle?: string }): void {
  const path = join(resolve(options.bundle ?? process.cwd()), "config.json");
  if (existsSync(path)) throw new MoatError("MOAT_CLI_SPEC", `${path}: exists already; remove it first`, { status: Code.ALREADY_EXISTS });
  const spec = defaultSpec({ args: ["sh"], env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"], cwd: "/", hostname: "moat" });
  writeFileSync(path, JSON.stringify(spec, null, 2) + "\n");
}

/** `features`: what moat supports today, in the shape of runtime-spec features.md. */
export function featuresCommand(): void {
  const features = {
    ociVersionMin: "1.0.0",
    ociVersionMax: "1.0.2",
    // prestart, createRuntime, poststart, poststop on the host; createContainer, startContainer in the guest (oci/hooks.ts).
    hooks: ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
    mountOptions: ["bind", "rbind", "ro", "rw", "nosuid", "nodev", "noexec", "relatime", "strictatime"],
    linux: {
      namespaces: ["cgroup", "ipc", "mount", "network", "pid", "uts"],
      cgroup: { v1: false, v2: true, systemd: false, systemdUser: false },
      seccomp: { enabled: true },
      apparmor: { enabled: false },
      selinux: { enabled: false },
    },
    annotations: {
      "io.github.moat.vm": "true",
      "io.github.moat.bind-mount-of-file": "unsupported",
    },
  };
  process.stdout.write(JSON.stringify(features, null, 2) + "\n");
}
