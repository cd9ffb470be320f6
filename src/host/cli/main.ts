// `moat`: the command line's entry point. Errors become one line on stderr here, and only
// here: those a command throws, and those that escape every await (a failed promise nobody
// waited for), which Node would otherwise print as a stack trace. --debug shows the stack.
import { formatForUser, MoatError } from "../../shared/errors.js";
import type { GlobalOptions } from "./global-options.js";
import { buildProgram } from "./program.js";
import { writeRuntimeLog } from "./runtime-log.js";

async function main(): Promise<void> {
  const program = buildProgram();
  const report = (error: unknown) => {
    const global = program.opts<GlobalOptions>();
    process.stderr.write(`moat: ${global.debug && error instanceof Error ? error.stack : formatForUser(error)}\n`);
    if (global.log) writeRuntimeLog(global.log, global.logFormat, formatForUser(error));
    return error instanceof MoatError ? error.exitStatus : 1;
  };
  const escaped = (error: unknown) => process.exit(report(error));
  process.on("uncaughtException", escaped);
  process.on("unhandledRejection", escaped);
  try {
    await program.parseAsync(process.argv);
  } catch (error) {
    process.exitCode = report(error);
  }
}

await main();
