// `moatd`: the host daemon's entry point, where the daemon and the front ends it serves are
// put together (the daemon itself knows none of them: src/host/daemon/serve.ts).
//   moatd [--root DIR] [--config FILE] [--idle-exit-seconds N]
import { parseArgs } from "node:util";
import { formatForUser } from "../../shared/errors.js";
import { loadConfig } from "../config/index.js";
import { containUnhandledRejections, serveDaemon } from "../daemon/index.js";
import { containerdTaskFrontEnd } from "../shim/index.js";

const log = (line: string) => process.stderr.write(`${new Date().toISOString()} ${line}\n`);
// One sandbox's failure must not end moatd and every other sandbox's control plane with it.
containUnhandledRejections(log);

try {
  const { values } = parseArgs({
    options: { root: { type: "string" }, config: { type: "string" }, "idle-exit-seconds": { type: "string", default: "30" } },
  });
  const config = loadConfig(values.config);
  if (values.root) config.runtime.stateRoot = values.root;
  await serveDaemon(config, { idleExitMs: Number(values["idle-exit-seconds"]) * 1000, log, frontEnds: [containerdTaskFrontEnd] });
} catch (error) {
  log(`moatd: ${formatForUser(error)}`);
  process.exitCode = 1;
}
