// bench/exec-storm: many concurrent `moat exec`s into a few running containers, each
// `sh -c 'echo ROUND-N; exit 7'` checked for its output and 7. Not a timing figure: the count
// of wrong results is the result. It found the exec stand-in's EPIPE (moatd sent a fast
// process's output, exit and close before the stand-in's HELLO) and the agent's pid 0 for an
// exec that exits at once (issue 13; docs/PERFORMANCE.md, "Soak"), which the soak, one exec
// per container, hits rarely.
//
//   node dist/bench/exec-storm.js [--rounds 8] [--width 16] [--containers 4]
import { join } from "node:path";
import { parseArgs } from "node:util";
import { busyboxBundle } from "../test/integration/harness/bundle.js";
import { helperBinary } from "../test/integration/harness/c-helper.js";
import { runMoat } from "../test/integration/harness/moat-cli.js";
import { createAsConmon } from "../test/integration/harness/oci-runtime.js";
import { DAEMON_FILES, TestWorkspace } from "../test/integration/harness/state-root.js";

const { values } = parseArgs({ options: { rounds: { type: "string", default: "8" }, width: { type: "string", default: "16" }, containers: { type: "string", default: "4" } } });
const rounds = Number(values.rounds);
const width = Number(values.width);
const ids = Array.from({ length: Number(values.containers) }, (_, index) => `storm-${index}`);

const workspace = new TestWorkspace();
const subreaper = helperBinary(workspace.dir, "subreaper");
const moat = (args: string[]) => runMoat(["--root", workspace.stateRoot, ...args]);
let failures = 0;
try {
  // moatd started outside the subreaper (playing conmon), which would otherwise wait for it as its orphan.
  await moat(["list"]);
  for (const id of ids) {
    const container = createAsConmon(subreaper, workspace.stateRoot, busyboxBundle(join(workspace.dir, id), ["sleep", "1000"]), id, "");
    if ((await container.created) !== 0) throw new Error(`create ${id}: ${container.stderr()}`);
    const start = await moat(["start", id]);
    if (start.code !== 0) throw new Error(`start ${id}: ${start.stderr}`);
  }
  for (let round = 0; round < rounds; round++) {
    const results = await Promise.all(Array.from({ length: width }, (_, index) => moat(["exec", ids[index % ids.length]!, "sh", "-c", `echo ${round}-${index}; exit 7`]))); // ids is not empty
    for (const [index, result] of results.entries()) {
      if (result.code === 7 && result.stdout === `${round}-${index}\n`) continue;
      failures++;
      process.stdout.write(`round ${round} exec ${index}: exit ${result.code}, stdout ${JSON.stringify(result.stdout)}: ${result.stderr.trim()}\n`);
    }
  }
  for (const id of ids) {
    const deleted = await moat(["delete", "--force", id]);
    if (deleted.code !== 0) throw new Error(`delete ${id}: ${deleted.stderr}`);
  }
  workspace.assertNothingLeft(DAEMON_FILES);
} finally {
  await workspace.stopDaemon();
  workspace.remove();
}
process.stdout.write(`${rounds * width} execs into ${ids.length} containers, ${width} at a time: ${failures} wrong\n`);
if (failures > 0) process.exit(1);
