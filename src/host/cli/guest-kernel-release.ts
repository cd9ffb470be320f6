// The release of a built guest kernel ("6.1.192-moat"): image/kernel/build.sh writes it beside
// the vmlinux in the build cache, and dist/guest/vmlinux links there.
import { readFile, realpath } from "node:fs/promises";
import { dirname, join } from "node:path";

export async function guestKernelRelease(kernelPath: string): Promise<string | undefined> {
  try {
    const release = await readFile(join(dirname(await realpath(kernelPath)), "release"), "utf8");
    return release.trim() || undefined;
  } catch {
    return undefined;
  }
}
