// `moat`: the command line's entry point. Errors become one line on stderr here, and only here.
import { formatForUser, MoatError } from "../../shared/errors.js";
import type { GlobalOptions } from "./global-options.js";
import { buildProgram } from "./program.js";
import { writeRuntimeLog } from "./runtime-log.js";

async function main(): Promise<void> {
  const program = buildProgram();
  try {
    await program.parseAsync(process.argv);
  } catch (error) {
    const global = program.opts<GlobalOptions>();
    process.stderr.write(`moat: ${global.debug && error instanceof Error ? error.stack : formatForUser(error)}\n`);
    if (global.log) writeRuntimeLog(global.log, global.logFormat, formatForUser(error));
    process.exitCode = error instanceof MoatError ? error.exitStatus : 1;
  }
}

await main();
