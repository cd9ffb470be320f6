// Podman with conmon driving moat as its OCI runtime: private storage, the built-in busybox
// image imported locally (no registry is reachable), moat's state under the test file's own
// state root (a wrapper passes --root), and nothing left after each test.
import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, afterEach } from "node:test";
import { packageRoot } from "../../../src/host/config/index.js";
import { moatBinary, runCommand, type CliResult } from "./moat-cli.js";
import { DAEMON_FILES, TestWorkspace } from "./state-root.js";

export interface PodmanForTestFile {
  workspace: TestWorkspace;
  /** Runs `podman ARGS` with the private storage and moat as its runtime; stdin gets `input` (else nothing). */
  podman(args: string[], input?: string): Promise<CliResult>;
  /** `podman --runtime` value for moat with `moatArgs` before the command (such as --config FILE). */
  runtimeWith(name: string, moatArgs: string[]): string;
}

/** `networkConfigDir`: podman's CNI conflists (--network-config-dir), for a test's own networks. */
export function podmanForTestFile(options: { networkConfigDir?: (workspaceDir: string) => string } = {}): PodmanForTestFile {
  const workspace = new TestWorkspace();
  /**
   * moat with the test's state root, as one executable. Not --runtime-flag root=…: podman's
   * exit command, which removes a container after it exits, drops runtime flags (podman 4.3).
   */
  const runtimeWith = (name: string, moatArgs: string[]) => {
    const path = join(workspace.dir, name);
    writeFileSync(path, `#!/bin/sh\nexec ${moatBinary} --root ${workspace.stateRoot} ${moatArgs.join(" ")} "$@"\n`, { mode: 0o755 });
    return path;
  };
  const podmanArgs = [
    "--root", join(workspace.dir, "podman-root"),
    "--runroot", join(workspace.dir, "podman-runroot"),
    "--cgroup-manager", "cgroupfs",
    "--events-backend", "file",
    ...(options.networkConfigDir ? ["--network-config-dir", options.networkConfigDir(workspace.dir)] : []),
  ];
  const defaultRuntime = runtimeWith("moat-runtime", []);
  const podman = (args: string[], input?: string) => {
    const runtime = args.includes("--runtime") ? [] : ["--runtime", defaultRuntime];
    return runCommand("podman", [...podmanArgs, ...runtime, ...args], { input: input ?? "" });
  };

  const tarball = join(workspace.dir, "busybox.tar");
  execFileSync("tar", ["-C", join(packageRoot(), "dist", "images", "busybox", "rootfs"), "-cf", tarball, "."]);
  execFileSync("podman", [...podmanArgs, "import", tarball, "localhost/busybox"], { stdio: "ignore" });

  // podman removes a container from conmon's exit command, after `podman run --rm` returned.
  afterEach(() => workspace.assertNothingLeftWithin(30_000, DAEMON_FILES));
  after(async () => {
    await podman(["rm", "--all", "--force"]);
    await workspace.stopDaemon();
    execFileSync("podman", [...podmanArgs, "system", "reset", "--force"], { stdio: "ignore" });
    workspace.remove();
  });
  return { workspace, podman, runtimeWith };
}
