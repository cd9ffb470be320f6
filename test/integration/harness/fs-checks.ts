// Bundles that run test/support/fs-checks.c (dist/test/bin/moat-fs-checks) in a container: on a
// directory of its root file system and on a read-write volume, as a root process with the
// capabilities the caller names (issue-15-files, issue-13-share-attacks).
import { chmodSync, copyFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { busyboxBundle } from "./bundle.js";
import { repoRoot } from "./moat-cli.js";

export const FS_CHECKS_BINARY = join(repoRoot, "dist", "test", "bin", "moat-fs-checks");

/**
 * A busybox bundle under `dir` whose process is `sh -c script`, with /fs-checks in its root, an
 * empty `rootDir` there, and `dir`/volume bind-mounted read-write at /vol.
 */
export function fsChecksBundle(dir: string, script: string, rootDir: string, capabilities: string[]): { bundle: string; volume: string } {
  const volume = join(dir, "volume");
  mkdirSync(volume, { recursive: true });
  const bundle = busyboxBundle(join(dir, "bundle"), ["sh", "-c", script], (spec) => {
    spec.mounts = [...(spec.mounts ?? []), { destination: "/vol", type: "bind", source: volume, options: ["rbind", "rw"] }];
    spec.process.capabilities = { bounding: capabilities, effective: capabilities, permitted: capabilities };
  });
  copyFileSync(FS_CHECKS_BINARY, join(bundle, "rootfs", "fs-checks"));
  chmodSync(join(bundle, "rootfs", "fs-checks"), 0o755);
  mkdirSync(join(bundle, "rootfs", rootDir));
  mkdirSync(join(bundle, "rootfs", "vol"));
  return { bundle, volume };
}
