// The command table of `moat`. Each command lives in its own file and only parses its
// arguments before calling the layers below. `moat --help` and docs/cli.md both come from here.
import { Command } from "commander";
import { MOAT_VERSION } from "../../shared/version.js";
import { bootCommand, type BootOptions } from "./boot.js";
import { checkCommand } from "./check.js";
import { runCommand, type RunCommandOptions } from "./run.js";
import type { GlobalOptions } from "./global-options.js";
import { versionCommand } from "./version.js";

export function buildProgram(): Command {
  const program = new Command("moat")
    .description("A secure container runtime: every container or pod in its own lightweight VM.")
    .version(MOAT_VERSION, "-v, --version", "print moat's version")
    .option("--config <file>", "configuration file (default: $MOAT_CONFIG, else /etc/moat/configuration.toml if present)")
    .option("--root <dir>", "state root for sandboxes (default: /run/moat)")
    .option("--debug", "show stack traces on errors")
    .enablePositionalOptions()
    .showHelpAfterError()
    .addHelpText(
      "after",
      "\nEnvironment:\n  MOAT_TRACE=qmp,qemu,ttrpc,sandbox|all   trace lines on stderr\n  MOAT_CONFIG=FILE                        configuration file\n\nNot yet supported: the OCI runtime commands (create/start/…), terminals, the containerd shim, templates.",
    );

  program
    .command("check")
    .description("tell whether this host can run sandboxes, and what to fix if not")
    .action(async () => {
      process.exitCode = await checkCommand(program.opts<GlobalOptions>());
    });

  program
    .command("version")
    .description("print the versions of moat, QEMU and the guest kernel")
    .action(() => versionCommand(program.opts<GlobalOptions>()));

  program
    .command("boot")
    .description("boot a sandbox VM with no container, compare its kernel with the host's, shut it down")
    .option("--id <id>", "sandbox id (default: boot-<random>)")
    .option("--json", "print the result as one JSON object")
    .action((options: BootOptions) => bootCommand(options, program.opts<GlobalOptions>()));

  program
    .command("run")
    .description("run a container in its own VM, in the foreground; exit with its status")
    .argument("[image-and-command...]", "a built-in image (busybox), then the command and its arguments (default: the image's)")
    .option("--bundle <dir>", "run an OCI bundle (config.json and its root file system) instead of an image")
    .option("--rm", "remove the container when it exits (always the case until moatd keeps stopped containers)")
    .option("-i, --interactive", "relay stdin to the container")
    .option("-t, --tty", "allocate a terminal (not supported yet)")
    .option("--cpus <n>", "vCPUs of the container's VM")
    .option("--memory <size>", "memory of the container's VM, e.g. 512m or 1g")
    .option("--name <id>", "container id (default: run-<random>)")
    .passThroughOptions()
    .action(async (imageAndArgs: string[], options: RunCommandOptions) => {
      process.exitCode = await runCommand(imageAndArgs, options, program.opts<GlobalOptions>());
    });

  return program;
}
