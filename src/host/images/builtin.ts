// Images moat builds itself, so that a newcomer runs a container with no registry: today
// `busybox`, from Debian's busybox-static (image/busybox/build.sh, run by `make guest`).
import { existsSync } from "node:fs";
import { join } from "node:path";
import { MoatError } from "../../shared/errors.js";
import { Code } from "../../shared/ttrpc/index.js";
import { packageRoot } from "../config/index.js";

export interface Image {
  name: string;
  /** The image's root file system on the host, shared read-only with the guest. */
  rootfs: string;
  /** The environment and working directory the image's config gives its processes. */
  env: string[];
  cwd: string;
  /** The command when none is given. */
  cmd: string[];
}

const BUILTIN: Record<string, Omit<Image, "rootfs">> = {
  busybox: { name: "busybox", env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"], cwd: "/", cmd: ["sh"] },
};

export function builtinImage(name: string): Image {
  const image = BUILTIN[name];
  if (!image) {
    throw new MoatError("MOAT_IMAGE_UNKNOWN", `image ${name}: not found; the built-in images are: ${Object.keys(BUILTIN).join(", ")}`, {
      hint: "pulling from a registry is not supported yet; pass an OCI bundle with --bundle when that lands",
      status: Code.NOT_FOUND,
    });
  }
  const rootfs = join(packageRoot(), "dist", "images", name, "rootfs");
  if (!existsSync(rootfs)) {
    throw new MoatError("MOAT_IMAGE_NOT_BUILT", `image ${name}: ${rootfs} does not exist`, { hint: "make guest builds the built-in images", status: Code.FAILED_PRECONDITION });
  }
  return { ...image, rootfs };
}
