// The command table of `moat`. Each command lives in its own file and only parses its
// arguments before calling the layers below. `moat --help` and docs/cli.md both come from here.
import { Command } from "commander";
import { MOAT_VERSION } from "../../shared/version.js";
import { bootCommand, type BootOptions } from "./boot.js";
import { checkCommand } from "./check.js";
import { factoryDestroyCommand, factoryInitCommand, factoryStatusCommand } from "./factory.js";
import { runCommand, type RunCommandOptions } from "./run.js";
import { featuresCommand, specCommand } from "./spec-features.js";
import {
  createCommand,
  deleteCommand,
  execCommand,
  killCommand,
  listCommand,
  pauseCommand,
  psCommand,
  resumeCommand,
  startCommand,
  stateCommand,
  updateCommand,
  type CreateOptions,
  type ExecOptions,
} from "./oci-commands.js";
import type { UpdateOptions } from "./update-resources.js";
import type { GlobalOptions } from "./global-options.js";
import { installCommand, type InstallOptions } from "./install.js";
import { nodeInstallCommand, nodeUninstallCommand, type NodeInstallOptions, type NodeUninstallOptions } from "./node-install.js";
import { versionCommand } from "./version.js";

export function buildProgram(): Command {
  const program = new Command("moat")
    .description("A secure container runtime: every container or pod in its own lightweight VM.")
    .version(MOAT_VERSION, "-v, --version", "print moat's version")
    .option("--config <file>", "configuration file (default: $MOAT_CONFIG, else /etc/moat/configuration.toml if present)")
    .option("--root <dir>", "state root for sandboxes (default: /run/moat)")
    .option("--debug", "show stack traces on errors")
    .option("--log <file>", "also append errors to this file (runc compatible)")
    .option("--log-format <format>", "text or json, for --log (runc compatible)", "text")
    .option("--systemd-cgroup", "accepted for runc compatibility: a linux.cgroupsPath in systemd's slice:prefix:name form is told by its shape")
    .enablePositionalOptions()
    .showHelpAfterError()
    .addHelpText(
      "after",
      "\nEnvironment:\n  MOAT_TRACE=qmp,qemu,ttrpc,sandbox|all   trace lines on stderr\n  MOAT_CONFIG=FILE                        configuration file\n\nNot yet supported: pods (one VM per container).",
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
    .command("install")
    .description("put the containerd shim on the PATH (runtime type io.containerd.moat.v2), check containerd's configuration, optionally a systemd unit for moatd")
    .option("--prefix <dir>", "where the shim's name goes; containerd looks on its PATH", "/usr/local/bin")
    .option("--kata-compat", "also as containerd-shim-kata-v2, so io.containerd.kata.v2 runs on moat")
    .option("--containerd-config <file>", "containerd's configuration, checked for what cannot work with a shim v2 runtime", "/etc/containerd/config.toml")
    .option("--systemd", "also write moatd.service, which keeps moatd running (otherwise it starts on demand)")
    .option("--unit-dir <dir>", "where --systemd writes moatd.service", "/etc/systemd/system")
    .action((options: InstallOptions) => installCommand(options, program.opts<GlobalOptions>()));

  const node = program.command("node").description("a Kubernetes node: moat's files, the shim, containerd's runtimes and the node label, as the DaemonSet in deploy/ installs them");
  node
    .command("install")
    .description("install moat on this node (idempotent): copy its files, put the shim on the PATH, add the runtimes to containerd's config.toml (restarting containerd only if it changed), label the node")
    .option("--source <dir>", "the built moat to install (default: this moat)")
    .option("--install-dir <dir>", "where moat's files go on the node (releases/<hash>, current)", "/opt/moat")
    .option("--prefix <dir>", "where the shim's names go; containerd looks on its PATH", "/usr/local/bin")
    .option("--containerd-config <file>", "containerd's configuration (version 2 or 3); missing runtime tables are appended, nothing else is touched", "/etc/containerd/config.toml")
    .option("--runtimes <names>", "the CRI handlers to add: moat (io.containerd.moat.v2) and kata (io.containerd.kata.v2, for pods written for Kata)", "moat,kata")
    .option("--restart-command <command>", "how to restart containerd, run with /bin/sh -c when its configuration changed", "systemctl restart containerd")
    .option("--node-name <name>", "label this Kubernetes node moat.io/runtime=true with kubectl (default: $NODE_NAME; neither: no label)")
    .option("--kubectl <path>", "the kubectl that labels the node", "kubectl")
    .action((options: NodeInstallOptions) => nodeInstallCommand(options));
  node
    .command("uninstall")
    .description("undo exactly what `moat node install` did (recorded in <install-dir>/node-install.json): label, runtime tables, shim links, files")
    .option("--install-dir <dir>", "where moat node install put moat's files", "/opt/moat")
    .option("--restart-command <command>", "how to restart containerd, run with /bin/sh -c when its configuration changed", "systemctl restart containerd")
    .option("--kubectl <path>", "the kubectl that removes the node label", "kubectl")
    .action((options: NodeUninstallOptions) => nodeUninstallCommand(options));

  program
    .command("boot")
    .description("boot a sandbox VM with no container, compare its kernel with the host's, shut it down")
    .option("--id <id>", "sandbox id (default: boot-<random>)")
    .option("--json", "print the result as one JSON object")
    .action((options: BootOptions) => bootCommand(options, program.opts<GlobalOptions>()));

  program
    .command("run")
    .description("run a container in its own VM, in the foreground; exit with its status")
    .argument("[image-and-command...]", "a built-in image (busybox), then the command and its arguments (default: the image's); with --bundle, the container id (runc's run ID)")
    .option("--bundle <dir>", "run an OCI bundle (config.json and its root file system) instead of an image")
    .option("--rm", "remove the container when it exits (always the case until moatd keeps stopped containers)")
    .option("-i, --interactive", "relay stdin to the container")
    .option("-t, --tty", "give the container a terminal; with -i this terminal is raw while it runs, and its size follows this one's")
    .option("--cpus <n>", "vCPUs of the container's VM")
    .option("--memory <size>", "memory of the container's VM, e.g. 512m or 1g")
    .option("--name <id>", "container id (default: run-<random>)")
    .option("-d, --detach", "with --bundle: create and start through moatd and return (runc's run -d)")
    .option("--pid-file <file>", "write the pid of the host process that stands for the container")
    .option("--network <name>", "put the container on this CNI network (repeat for more: eth0, eth1, …); default none, loopback only", collect)
    .option("--cni-conf-dir <dir>", "where the CNI networks' conflists are", "/etc/cni/net.d")
    .option("-p, --publish <[ip:]host:container[/proto]>", "publish a container port on the host through CNI's portmap (repeatable; needs --network)", collect)
    .passThroughOptions()
    .action(async (imageAndArgs: string[], options: RunCommandOptions) => {
      process.exitCode = await runCommand(imageAndArgs, options, program.opts<GlobalOptions>());
    });

  const global = () => program.opts<GlobalOptions>();
  const factory = program.command("factory").description("VM templates that sandboxes restore from instead of booting");
  factory
    .command("init")
    .description("build the template for the current configuration and restore one VM from it")
    .action(() => factoryInitCommand(global()));
  factory
    .command("status")
    .description("list the templates (marking the one the current configuration uses, and those of other sizes) and the warm pool")
    .action(() => factoryStatusCommand(global()));
  factory
    .command("destroy")
    .description("remove every template (running sandboxes keep theirs)")
    .action(() => factoryDestroyCommand(global()));

  program
    .command("create")
    .description("OCI: create a container in its own VM from a bundle; its process waits for start")
    .argument("<id>", "container id")
    .option("-b, --bundle <dir>", "the OCI bundle (default: the current directory)")
    .option("--pid-file <file>", "write the pid of the host process that stands for the container")
    .option("--console-socket <socket>", "with process.terminal: the unix socket that receives the terminal's master (SCM_RIGHTS), as from runc")
    .option("--preserve-fds <n>", "accepted for runc compatibility; extra descriptors do not reach a VM")
    .option("--no-pivot", "accepted for runc compatibility")
    .option("--no-new-keyring", "accepted for runc compatibility")
    .action((id: string, options: CreateOptions) => createCommand(id, options, global()));
  program
    .command("start")
    .description("OCI: start a created container's process")
    .argument("<id>", "container id")
    .action((id: string) => startCommand(id, global()));
  program
    .command("exec")
    .description("OCI: run another process in a running container; exit with its status")
    .argument("<id>", "container id")
    .argument("[command...]", "the command and its arguments (unless --process)")
    .option("-p, --process <file>", "the process as an OCI process JSON object")
    .option("-d, --detach", "leave the process running; its stand-in's pid goes to --pid-file")
    .option("--pid-file <file>", "write the pid of the host process that stands for the process")
    .option("--cwd <dir>", "working directory in the container")
    .option("-e, --env <KEY=VALUE>", "extra environment (repeatable)", (value: string, previous: string[]) => [...previous, value], [] as string[])
    .option("-u, --user <uid[:gid]>", "user and group ids")
    .option("-t, --tty", "give the process a terminal: this command's own (raw while it runs), or --console-socket's")
    .option("--console-socket <socket>", "the unix socket that receives the terminal's master (SCM_RIGHTS), as from runc")
    .passThroughOptions()
    .action(async (id: string, args: string[], options: ExecOptions) => {
      process.exitCode = await execCommand(id, args, options, global());
    });
  program
    .command("state")
    .description("OCI: print a container's state as JSON")
    .argument("<id>", "container id")
    .action((id: string) => stateCommand(id, global()));
  program
    .command("kill")
    .description("OCI: send a signal (default SIGTERM) to a container's process")
    .argument("<id>", "container id")
    .argument("[signal]", "a name (TERM, SIGKILL) or number")
    .option("-a, --all", "signal every process in the container")
    .action((id: string, signal: string | undefined, options: { all?: boolean }) => killCommand(id, signal, options, global()));
  program
    .command("pause")
    .description("OCI: freeze every process of a running container")
    .argument("<id>", "container id")
    .action((id: string) => pauseCommand(id, global()));
  program
    .command("resume")
    .description("OCI: thaw a paused container")
    .argument("<id>", "container id")
    .action((id: string) => resumeCommand(id, global()));
  program
    .command("delete")
    .description("OCI: delete a stopped container and its VM")
    .argument("<id>", "container id")
    .option("-f, --force", "kill it first if it still runs")
    .action((id: string, options: { force?: boolean }) => deleteCommand(id, options, global()));
  program
    .command("spec")
    .description("OCI: write a starting config.json into the bundle directory")
    .option("-b, --bundle <dir>", "the bundle directory (default: the current directory)")
    .action((options: { bundle?: string }) => specCommand(options));
  program
    .command("features")
    .description("OCI: print what this runtime supports, as JSON")
    .action(() => featuresCommand());
  program
    .command("list")
    .description("OCI: list containers")
    .option("-f, --format <format>", "table or json", "table")
    .option("-q, --quiet", "print only the ids")
    .action((options: { format?: string; quiet?: boolean }) => listCommand(options, global()));
  program
    .command("ps")
    .description("OCI: list a container's processes (the table: the guest's pids and commands; the container runs in a VM)")
    .argument("<id>", "container id")
    .option("-f, --format <format>", "table or json (runc's array of host pids: the container's stand-in)", "table")
    .action((id: string, options: { format?: string }) => psCommand(id, options, global()));
  program
    .command("update")
    .description("OCI: change a container's resources (its cgroup inside the VM; the VM's own size stays)")
    .argument("<id>", "container id")
    .option("-r, --resources <file>", "an OCI LinuxResources JSON file, - for stdin")
    .option("--memory <size>", "memory limit, e.g. 256m; -1 for none")
    .option("--memory-reservation <size>", "memory soft limit")
    .option("--memory-swap <size>", "memory plus swap limit")
    .option("--cpu-share <n>", "CPU weight (shares)")
    .option("--cpu-quota <us>", "CPU time per period, in microseconds")
    .option("--cpu-period <us>", "CPU period, in microseconds")
    .option("--cpuset-cpus <list>", "CPUs to use, e.g. 0-1")
    .option("--cpuset-mems <list>", "memory nodes to use")
    .option("--pids-limit <n>", "most processes; -1 for none")
    .option("--blkio-weight <n>", "block I/O weight")
    .action((id: string, options: UpdateOptions) => updateCommand(id, options, global()));

  return program;
}

/** A repeatable option's values, in order. */
function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}
