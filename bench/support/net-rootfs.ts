// The network benchmark's container: busybox (httpd, sh) and Debian's iperf3 with the shared
// libraries it links, copied from the host at the same paths, so the same bundle runs under
// moat, runc and gVisor.
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";

const IPERF3 = "/usr/bin/iperf3";

/** What `ldd` says `binary` loads: absolute paths, the dynamic loader included. */
function sharedLibraries(binary: string): string[] {
  const output = execFileSync("ldd", [binary], { encoding: "utf8" });
  // Lines are "name => /path (0x…)" or "/lib64/ld-linux-x86-64.so.2 (0x…)"; the vDSO has no path.
  return [...output.matchAll(/(\/\S+) \(0x[0-9a-f]+\)/g)].map((match) => match[1]!); // group 1 always matches
}

function copyAtSamePath(rootfs: string, path: string): void {
  mkdirSync(join(rootfs, dirname(path)), { recursive: true });
  copyFileSync(path, join(rootfs, path));
}

/** Adds iperf3 and a small page for httpd to a busybox rootfs (see baselines.busyboxBundle). */
export function addNetworkTools(rootfs: string): void {
  for (const path of [IPERF3, ...sharedLibraries(IPERF3)]) copyAtSamePath(rootfs, path);
  for (const applet of ["httpd", "sleep"]) execFileSync("ln", ["-sf", "busybox", join(rootfs, "bin", applet)]);
  mkdirSync(join(rootfs, "www"));
  writeFileSync(join(rootfs, "www", "index.html"), "moat network benchmark\n");
  mkdirSync(join(rootfs, "tmp"), { recursive: true });
}
