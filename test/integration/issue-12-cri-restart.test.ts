// Issue 12 with issue 13's faults: containerd killed and restarted under a running pod, as a
// node's containerd is upgraded or crashes. containerd reconnects to each task's shim address
// (moat's per-task relay); a pod member's relay must have stayed for it, although the member's
// state lives in its pod's state directory (docs/design.md, "Pods"). Afterwards the member
// still answers ExecSync through the new containerd, the pod is removed as kubelet removes it,
// and nothing is left.
import assert from "node:assert/strict";
import { test } from "node:test";
import { criNodeForTestFile, eventually } from "./harness/cri.js";

const node = criNodeForTestFile();

test("containerd SIGKILLed and restarted under a kata pod: its member answers ExecSync through the new containerd, then the pod goes whole", async () => {
  const pod = await node.runPod("kata", { name: "restart-pod" });
  try {
    const id = await node.startContainer(pod, { name: "member", command: ["sleep", "3600"] });
    const before = await node.exec(id, ["echo", "before"]);
    assert.equal(before.stdout, "before\n", before.stderr);

    await node.containerd.stop("SIGKILL");
    await node.containerd.start();

    // The CRI client dials the new containerd by itself; until it has, calls fail.
    const after = await eventually(
      () => node.exec(id, ["echo", "after"]).catch((error: unknown) => ({ stdout: "", stderr: String(error), exitCode: -1 })),
      (result) => result.exitCode === 0,
    );
    assert.equal(after.stdout, "after\n", `the member answers through the restarted containerd: ${after.stderr}\n${node.containerd.log().slice(-3000)}`);
    const { status } = await node.cri.runtime.containerStatus({ containerId: id });
    assert.equal(status?.state, 1, "CONTAINER_RUNNING");
    assert.equal(node.workspace.qemuProcesses().length, 1, "the pod's one VM");
  } finally {
    await node.removePod(pod.id);
  }
  await node.assertNothingLeft();
});
