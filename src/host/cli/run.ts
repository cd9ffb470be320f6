// `moat run`: a container in its own VM, in the foreground, removed when it exits. The exit
// status is the container's (128 + N for a signal), as docker and podman report it.
// With --bundle it is also runc's `run [--detach] [--pid-file F] --bundle DIR ID`: the one
// argument is the container id, and --detach makes it create + start through moatd. With -t
// the container gets a terminal in the guest, sized as this one; with -i too, this terminal
// is raw while the container runs (local-terminal.ts) and is restored after.
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { constants } from "node:os";
import { MoatError } from "../../shared/errors.js";
import { Code } from "../../shared/ttrpc/index.js";
import { loadConfig } from "../config/index.js";
import { daemonPool } from "../daemon/index.js";
import { builtinImage } from "../images/index.js";
import { loadBundle } from "../oci/index.js";
import { runContainer, type RunningProcess } from "../sandbox/index.js";
import { withOverrides, type GlobalOptions } from "./global-options.js";
import { localTerminalMode, localWindowSize, onLocalResize } from "./local-terminal.js";
import { createCommand, startCommand } from "./oci-commands.js";

export interface RunCommandOptions {
  rm?: boolean;
  interactive?: boolean;
  tty?: boolean;
  cpus?: string;
  memory?: string;
  name?: string;
  bundle?: string;
  detach?: boolean;
  pidFile?: string;
}

export async function runCommand(imageAndArgs: string[], options: RunCommandOptions, global: GlobalOptions): Promise<number> {
  const [image, ...args] = imageAndArgs;
  if (options.bundle === undefined && image === undefined) {
    throw new MoatError("MOAT_RUN_ARGS", "moat run: name an image (busybox) or give --bundle DIR", { status: Code.INVALID_ARGUMENT });
  }
  if (options.bundle !== undefined && args.length > 0) {
    throw new MoatError("MOAT_RUN_ARGS", `moat run: --bundle runs the bundle's own process and takes one argument, the container id; drop "${args.join(" ")}"`, {
      status: Code.INVALID_ARGUMENT,
    });
  }
  if (options.detach && options.bundle === undefined) {
    throw new MoatError("MOAT_RUN_ARGS", "moat run: --detach runs a bundle (runc's run -d): give --bundle DIR ID", { status: Code.INVALID_ARGUMENT });
  }
  // With --bundle, the positional argument is runc's container id.
  const id = (options.bundle !== undefined ? image : undefined) ?? options.name ?? `run-${randomBytes(4).toString("hex")}`;
  if (options.detach) {
    await createCommand(id, { bundle: options.bundle, pidFile: options.pidFile }, global);
    await startCommand(id, global);
    return 0;
  }
  const bundle = options.bundle === undefined ? undefined : loadBundle(options.bundle);
  for (const warning of bundle?.warnings ?? []) process.stderr.write(`moat: warning: ${warning}\n`);
  const terminal = options.tty === true || bundle?.spec.process.terminal === true;
  const config = withOverrides(loadConfig(global.config), global);
  const what = bundle ? { bundle } : { image: builtinImage(image!), args }; // image is defined when there is no bundle (checked above)
  const vcpus = options.cpus === undefined ? undefined : parseCpus(options.cpus);
  const memoryMiB = options.memory === undefined ? undefined : parseMemoryMiB(options.memory);
  const restoreTerminal = terminal ? localTerminalMode(options.interactive === true) : () => undefined;
  // SIGINT or SIGTERM before the container runs stops the start, and what it made is undone
  // (QEMU, the state directory); once it runs, the first goes to the container, whose init
  // may ignore it, and a second kills it, so that moat run can always be stopped.
  const stop = new AbortController();
  let container: RunningProcess | undefined;
  let received = 0;
  const onSignal = (name: "SIGINT" | "SIGTERM") => {
    const number = constants.signals[name];
    if (container) return container.signal(++received === 1 ? number : 9);
    stop.abort(new MoatError("MOAT_RUN_INTERRUPTED", `moat run: stopped by ${name} before the container started; nothing was left behind`, { status: Code.CANCELLED, exitStatus: 128 + number }));
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  try {
    const result = await runContainer(config, {
      id,
      what,
      stdin: options.interactive ? process.stdin : undefined,
      stdout: process.stdout,
      stderr: process.stderr,
      vcpus,
      memoryMiB,
      // moatd's warm pool, when the configuration keeps one (moatd is started if it is not running).
      pool: config.factory.vmCacheNumber > 0 ? daemonPool({ stateRoot: config.runtime.stateRoot, configPath: global.config ?? process.env.MOAT_CONFIG }) : undefined,
      terminal: terminal ? { size: localWindowSize() } : undefined,
      abort: stop.signal,
      log: (line) => process.stderr.write(`note: ${line}\n`),
      onStarted: (running) => {
        container = running;
        // In the foreground this process stands for the container, as runc run's does.
        if (options.pidFile) writeFileSync(options.pidFile, String(process.pid));
        if (terminal) onLocalResize(({ rows, columns }) => running.resize(rows, columns));
      },
    });
    return result.exitStatus;
  } finally {
    restoreTerminal();
    // Input the container did not take must not keep this command waiting for more.
    if (options.interactive) process.stdin.destroy();
  }
}

function parseCpus(text: string): number {
  const cpus = Number(text);
  if (!Number.isInteger(cpus) || cpus < 1 || cpus > 64) {
    throw new MoatError("MOAT_RUN_ARGS", `moat run: --cpus: must be a whole number from 1 to 64, got "${text}"`, { status: Code.INVALID_ARGUMENT });
  }
  return cpus;
}

/** "512m", "1g", "256M", "1073741824" (bytes) → MiB. */
export function parseMemoryMiB(text: string): number {
  const match = /^(\d+)([kmg]?)b?$/i.exec(text.trim());
  const scale: Record<string, number> = { "": 1 / (1024 * 1024), k: 1 / 1024, m: 1, g: 1024 };
  const mib = match ? Number(match[1]) * scale[match[2]!.toLowerCase()]! : Number.NaN; // both groups exist when matched
  if (!Number.isFinite(mib) || mib < 128 || mib > 1024 * 1024) {
    throw new MoatError("MOAT_RUN_ARGS", `moat run: --memory: must be a size from 128m to 1024g, such as 512m or 2g, got "${text}"`, { status: Code.INVALID_ARGUMENT });
  }
  return Math.floor(mib);
}
