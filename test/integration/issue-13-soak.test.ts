// Issue 13, item 6, in CI: a short soak (20 cycles, 10 at a time) through the OCI CLI and
// through containerd, with the bench's checks (bench/soak.ts runs 1,000): every cycle's result
// right, moatd's descriptors back to their count with no container, its RSS within the
// stated bound, and the census finding nothing left.
import { test } from "node:test";
import { Containerd } from "./harness/containerd.js";
import { assertSoakFlat, soak } from "./harness/soak.js";
import { DAEMON_FILES, TestWorkspace } from "./harness/state-root.js";

const CYCLES = 20;

// Found here (issue 13): an exec whose process had exited before its stand-in said HELLO had
// its output, exit and close sent at once, and the stand-in got EPIPE and exited 255; the
// cycle then never reached its delete, so its QEMU looked like a leak (stdio-relay.ts now waits
// for the HELLO, moat-standin.c reads what was sent before a close, the cycle deletes anyway).
test(`${CYCLES} create/start/exec/delete cycles through the OCI CLI, 10 at a time: every result right, moatd flat, nothing left`, async (t) => {
  const workspace = new TestWorkspace();
  t.after(async () => {
    await workspace.stopDaemon();
    workspace.remove();
  });
  const result = await soak({ workspace, cycles: CYCLES, concurrency: 10, daemonFiles: DAEMON_FILES });
  assertSoakFlat(result);
  workspace.assertCensusClean({ daemonDescriptors: result.start.descriptors });
});

test(`${CYCLES} cycles through containerd (ctr run -d, task exec, kill, rm), 10 at a time: every result right, moatd flat, nothing left`, async (t) => {
  const workspace = new TestWorkspace();
  const containerd = new Containerd(workspace);
  t.after(async () => {
    await containerd.stop();
    await workspace.stopDaemon();
    workspace.remove();
  });
  await containerd.start();
  await containerd.importBusybox();
  const result = await soak({ workspace, cycles: CYCLES, concurrency: 10, containerd, daemonFiles: DAEMON_FILES });
  assertSoakFlat(result);
  await containerd.assertNothingLeft();
  workspace.assertCensusClean({ daemonDescriptors: result.start.descriptors });
});
