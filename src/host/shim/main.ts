// containerd-shim-moat-v2's rare subcommands, run by node when the C front end
// (containerd-shim-moat-v2.c, which answers `start` itself) hands them over:
//   containerd-shim-moat-v2 -namespace N -address A -publish-binary B -id ID [-bundle DIR] delete
//   containerd-shim-moat-v2 -v
//   containerd-shim-moat-v2 state-root
// `delete` is containerd's clean-up after a shim it believes dead: it ends the task's pid
// holders (task-pid.ts), removes the task's
// container and sandbox (through moatd if it runs, else directly), unmounts the bundle's rootfs, and prints a
// DeleteResponse (exit status 137, the convention for a task that died with its shim).
// `state-root` prints the configuration's state root for the C front end (moatd-start.c), so
// that it reads the configuration with this parser, not one of its own.
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { formatForUser, MoatError } from "../../shared/errors.js";
import { containerdTask } from "../../shared/protocol/index.js";
import { Code } from "../../shared/ttrpc/index.js";
import { MOAT_VERSION } from "../../shared/version.js";
import { loadConfig } from "../config/index.js";
import { removeContainer } from "../daemon/index.js";
import { unmountRootfs } from "./rootfs.js";
import { endHoldersIn } from "../standin/index.js";

/** Go's flag package syntax, as containerd passes flags: -name value, or -name for a boolean. */
function parseFlags(argv: string[]): { flags: Map<string, string>; command: string } {
  const booleans = new Set(["debug", "v", "version"]);
  const flags = new Map<string, string>();
  let command = "";
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!; // i < length
    if (!arg.startsWith("-")) {
      command = arg;
      continue;
    }
    const [name, inline] = arg.replace(/^--?/, "").split("=", 2) as [string, string | undefined]; // split always yields the name
    flags.set(name, inline ?? (booleans.has(name) ? "true" : (argv[++i] ?? "")));
  }
  return { flags, command };
}

async function deleteTask(id: string, bundle: string): Promise<void> {
  const where = `containerd-shim-moat-v2 delete ${id}`;
  if (!id) throw new MoatError("MOAT_SHIM_ARGS", `${where}: -id is required`, { status: Code.INVALID_ARGUMENT });
  if (bundle) await endHoldersIn(bundle); // the task's pids go with it, and out of its sandbox's host cgroup first
  await removeContainer(loadConfig(), id);
  if (bundle) await unmountRootfs(bundle, where);
  const response = create(containerdTask.DeleteResponseSchema, { exitStatus: 137, exitedAt: timestampFromDate(new Date()) });
  process.stdout.write(toBinary(containerdTask.DeleteResponseSchema, response));
}

try {
  const { flags, command } = parseFlags(process.argv.slice(2));
  if (flags.has("v") || flags.has("version")) {
    process.stdout.write(`containerd-shim-moat-v2:\n  Version: ${MOAT_VERSION}\n`);
  } else if (command === "state-root") {
    process.stdout.write(`${loadConfig().runtime.stateRoot}\n`);
  } else if (command === "delete") {
    await deleteTask(flags.get("id") ?? "", flags.get("bundle") ?? process.cwd());
  } else {
    throw new MoatError("MOAT_SHIM_ARGS", `containerd-shim-moat-v2: unknown subcommand "${command}" (start, delete and state-root are)`, { status: Code.INVALID_ARGUMENT });
  }
} catch (error) {
  process.stderr.write(`${formatForUser(error)}\n`);
  process.exitCode = 1;
}
