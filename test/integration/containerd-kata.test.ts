// Kata's containerd snippet (issue 4) with the CRI plugin on, as a Kata user's config.toml has
// it less `runtime_root` (which containerd 1.6 refuses for every shim v2 runtime): containerd
// loads CRI with it, and `io.containerd.kata.v2` runs tasks in moat's VMs once `moat install
// --kata-compat` has put the name on the PATH.
import assert from "node:assert/strict";
import { test } from "node:test";
import { containerdForTestFile } from "./harness/containerd.js";
import { runMoat } from "./harness/moat-cli.js";
import { BUSYBOX_IMAGE } from "./harness/oci-image.js";

const { workspace, containerd } = containerdForTestFile({ kataSnippetWithCri: true });

test("Kata's snippet with CRI on: the CRI plugin loads, and io.containerd.kata.v2 runs on moat", async () => {
  const plugins = await containerd.ctr(["plugins", "ls"]);
  assert.match(plugins.stdout, /^io\.containerd\.grpc\.v1\s+cri\s+\S+\s+ok\s*$/m, `CRI loaded with Kata's snippet:\n${plugins.stdout}\n${containerd.log().slice(-3000)}`);
  const installed = await runMoat(["install", "--prefix", containerd.installBin, "--kata-compat"]);
  assert.equal(installed.code, 0, installed.stderr);
  const result = await containerd.ctr(["run", "--rm", "--runtime", "io.containerd.kata.v2", "--fifo-dir", containerd.fifoDir, BUSYBOX_IMAGE, "kata-cri-1", "uname", "-r"]);
  assert.equal(result.code, 0, `${result.stderr}\n${workspace.daemonLog()}`);
  assert.match(result.stdout, /-moat\n$/, "the task ran under moat's guest kernel");
  await containerd.assertNothingLeft();
});
