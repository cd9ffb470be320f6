// OCI bundles for tests: a copy of the built-in busybox image's root file system and a
// config.json from moat's default spec, changed by the test (crun's tests start from a base
// config and change one field, the same way).
import { cpSync, mkdirSync, realpathSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { packageRoot } from "../../../src/host/config/index.js";
import { defaultSpec, type OciSpec } from "../../../src/host/oci/index.js";

export function busyboxBundle(dir: string, args: string[], change: (spec: OciSpec) => void = () => undefined): string {
  mkdirSync(dir, { recursive: true });
  // dist/images/busybox/rootfs is a symlink into the shared build cache: copied as it is, the
  // bundle's root would be the cache's image itself, and what a test writes (or removes) in
  // its root would change every later user's image.
  cpSync(realpathSync(join(packageRoot(), "dist", "images", "busybox", "rootfs")), join(dir, "rootfs"), { recursive: true, verbatimSymlinks: true, dereference: false });
  const spec = defaultSpec({ args, env: ["PATH=/bin:/sbin:/usr/bin"], cwd: "/", hostname: "bundle" });
  change(spec);
  writeFileSync(join(dir, "config.json"), JSON.stringify(spec, null, 2));
  return dir;
}
