// The OCI runtime commands, as runc's callers use them (conmon, containerd's runc shim with a
// custom binary): create, start, exec, state, kill, pause, resume, delete, list, ps, update.
// Each is a thin call to moatd.
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { constants as osConstants } from "node:os";
import { writeFile } from "node:fs/promises";
import { resolve } from "node:path";
import { MoatError } from "../../shared/errors.js";
import { parseJsonObject } from "../../shared/json-object.js";
import type { StateResponse } from "../../shared/protocol/index.js";
import { Code } from "../../shared/ttrpc/index.js";
import { loadConfig } from "../config/index.js";
import { asksNewNetworkNamespace, checkProcessDocument, consoleSize, loadBundle } from "../oci/index.js";
import { DaemonClient } from "../daemon/index.js";
import { vmSizeFor } from "../sandbox/index.js";
import { withOverrides, type GlobalOptions } from "./global-options.js";
import { localWindowSize } from "./local-terminal.js";
import { parseSignal } from "./signals.js";
import { standInTerminal, startStandIn, startStandInFirst } from "./stand-in.js";
import { updateResources, type UpdateOptions } from "./update-resources.js";

export interface CreateOptions {
  bundle?: string;
  pidFile?: string;
  consoleSocket?: string;
  /** CNI networks for the sandbox (`moat run --network --detach`), their conf dir and published ports. */
  cni?: { networks: string[]; cniConfDir?: string; publish: string[] };
}

async function daemon(global: GlobalOptions): Promise<DaemonClient> {
  const config = withOverrides(loadConfig(global.config), global);
  return DaemonClient.connect({ stateRoot: config.runtime.stateRoot, configPath: global.config ?? process.env.MOAT_CONFIG });
}

async function withDaemon<T>(global: GlobalOptions, action: (client: DaemonClient) => Promise<T>): Promise<T> {
  const client = await daemon(global);
  try {
    return await action(client);
  } finally {
    client.close();
  }
}

/**
 * `create`: the container's VM boots and its process waits; a stand-in holds its stdio, or
 * with process.terminal hands the terminal's master to --console-socket first.
 */
export async function createCommand(id: string, options: CreateOptions, global: GlobalOptions): Promise<void> {
  const bundleDir = resolve(options.bundle ?? process.cwd());
  const bundle = loadBundle(bundleDir);
  for (const warning of bundle.warnings) process.stderr.write(`moat: warning: ${warning}\n`);
  // Refused here, before moatd is asked, if the VM cannot be sized for the container (moatd checks again).
  vmSizeFor(withOverrides(loadConfig(global.config), global), bundle.spec, `${bundle.dir}/config.json`);
  const terminal = standInTerminal(`container ${id}`, bundle.spec.process.terminal === true, options.consoleSocket, true);
  // The stand-in starts first: the host's hooks get its pid, and a spec that asks for a new
  // network namespace without a path gets the stand-in's own new one (docs/networking.md); on
  // CNI networks that one becomes the sandbox's, which CNI fills before the hooks run.
  const standIn = await startStandInFirst({ terminal, detached: true, where: `container ${id}`, newNetns: asksNewNetworkNamespace(bundle.spec) || options.cni !== undefined }).catch((error: unknown) => {
    throw error instanceof MoatError ? error : new MoatError("MOAT_CLI_STANDIN", `container ${id}: cannot start the stand-in process`, { cause: error, status: Code.INTERNAL });
  });
  await withDaemon(global, async (client) => {
    let stdioSocket: string;
    try {
      ({ stdioSocket } = await client.create(id, bundleDir, standIn.pid, options.cni));
    } catch (error) {
      standIn.cancel();
      throw error;
    }
    try {
      await standIn.connect(stdioSocket);
      standIn.child.unref();
      if (options.pidFile) await writeFile(resolve(options.pidFile), String(standIn.pid));
    } catch (error) {
      standIn.cancel();
      await client.delete(id, true).catch(() => undefined);
      throw error instanceof MoatError ? error : new MoatError("MOAT_CLI_STANDIN", `container ${id}: cannot start the stand-in process`, { cause: error, status: Code.INTERNAL });
    }
  }).catch((error: unknown) => {
    standIn.cancel();
    throw error;
  });
}

export interface ExecOptions {
  process?: string;
  detach?: boolean;
  pidFile?: string;
  tty?: boolean;
  consoleSocket?: string;
  cwd?: string;
  env?: string[];
  user?: string;
}

/**
 * `exec`: another process in a running container. In the foreground the stand-in runs as this
 * command's child with its stdio, and this command exits with the process's status; with
 * --detach the stand-in is left behind like create's, its pid in --pid-file. A process with a
 * terminal (--tty, or terminal in --process) hands it to --console-socket, or in the
 * foreground without one uses this command's own terminal.
 */
export async function execCommand(id: string, args: string[], options: ExecOptions, global: GlobalOptions): Promise<number> {
  return withDaemon(global, async (client) => {
    const process = options.process ? readProcessFile(options.process) : await processFor(client, id, args, options);
    const execId = `exec-${randomBytes(6).toString("hex")}`;
    const where = `container ${id} exec ${execId}`;
    const terminal = standInTerminal(where, process.terminal === true, options.consoleSocket, options.detach === true);
    // The size goes in with the process, so that it is right before the process first looks.
    if (terminal === "own" && process.consoleSize === undefined) Object.assign(process, consoleSize(localWindowSize()));
    const { stdioSocket } = await client.exec(id, execId, process);
    const { child, pid } = await startStandIn(stdioSocket, { terminal, detached: options.detach === true, where });
    if (options.pidFile) await writeFile(resolve(options.pidFile), String(pid));
    if (options.detach) {
      child.unref();
      return 0;
    }
    // Signals sent to this command go to the process, as they would to runc exec's.
    for (const signal of ["SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT"] as const) globalThis.process.on(signal, () => child.kill(signal));
    return new Promise<number>((resolveStatus) => child.once("exit", (code, signal) => resolveStatus(code ?? 128 + (signal ? osConstants.signals[signal] : 0))));
  });
}

/** The process to exec: the container's own process from its bundle, with `args` and the options applied. */
async function processFor(client: DaemonClient, id: string, args: string[], options: ExecOptions): Promise<Record<string, unknown>> {
  if (args.length === 0) throw new MoatError("MOAT_CLI_EXEC", `container ${id}: exec needs a command, or --process FILE`, { status: Code.INVALID_ARGUMENT });
  const { bundle } = await client.state(id);
  const { consoleSize: _fromBundle, ...base } = loadBundle(bundle, false).spec.process; // the exec's own terminal, if any, gets its own size
  const process: Record<string, unknown> = { ...base, args, terminal: options.tty === true, env: [...(base.env ?? []), ...(options.env ?? [])] };
  if (options.cwd) process.cwd = options.cwd;
  if (options.user) {
    const match = /^(\d+)(?::(\d+))?$/.exec(options.user);
    if (!match) throw new MoatError("MOAT_CLI_EXEC", `container ${id}: --user: must be UID or UID:GID, got "${options.user}"`, { status: Code.INVALID_ARGUMENT });
    process.user = { uid: Number(match[1]), gid: Number(match[2] ?? 0) }; // group 1 exists when matched
  }
  return process;
}

function readProcessFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    throw new MoatError("MOAT_CLI_EXEC", `${path}: cannot read the process`, { cause: error, status: Code.INVALID_ARGUMENT });
  }
  const process = parseJsonObject(text, path, "MOAT_CLI_EXEC");
  // The rules of config.json's process, before moatd is asked.
  for (const warning of checkProcessDocument(process, path)) globalThis.process.stderr.write(`moat: warning: ${warning}\n`);
  return process;
}

export function startCommand(id: string, global: GlobalOptions): Promise<void> {
  return withDaemon(global, async (client) => void (await client.start(id)));
}

/** `state`: the OCI state as JSON, in runc's shape. */
export async function stateCommand(id: string, global: GlobalOptions): Promise<void> {
  const state = await withDaemon(global, (client) => client.state(id));
  process.stdout.write(JSON.stringify(ociState(state), null, 2) + "\n");
}

export function killCommand(id: string, signal: string | undefined, options: { all?: boolean }, global: GlobalOptions): Promise<void> {
  const number = parseSignal(signal ?? "SIGTERM");
  return withDaemon(global, async (client) => void (await client.kill(id, number, options.all ?? false)));
}

export function pauseCommand(id: string, global: GlobalOptions): Promise<void> {
  return withDaemon(global, async (client) => void (await client.pause(id)));
}

export function resumeCommand(id: string, global: GlobalOptions): Promise<void> {
  return withDaemon(global, async (client) => void (await client.resume(id)));
}

export function deleteCommand(id: string, options: { force?: boolean }, global: GlobalOptions): Promise<void> {
  return withDaemon(global, async (client) => void (await client.delete(id, options.force ?? false)));
}

export async function listCommand(options: { format?: string; quiet?: boolean }, global: GlobalOptions): Promise<void> {
  const { containers } = await withDaemon(global, (client) => client.list());
  if (options.quiet) {
    process.stdout.write(containers.map((state) => `${state.id}\n`).join(""));
  } else if (options.format === "json") {
    process.stdout.write(JSON.stringify(containers.map(ociState)) + "\n");
  } else {
    const rows = [["ID", "PID", "STATUS", "BUNDLE", "CREATED"], ...containers.map((state) => [state.id, String(state.pid), state.status, state.bundle, state.created])];
    const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length))); // every row has five columns
    process.stdout.write(rows.map((row) => row.map((cell, column) => cell.padEnd(widths[column]!)).join("   ").trimEnd() + "\n").join(""));
  }
}

/**
 * `ps`: the container's processes. They run in the VM: the table lists them with the guest's
 * pids and command lines. `--format json` is runc's array of host pids, which its callers look
 * up on the host (Docker's `top` runs the host's ps and keeps the rows with those pids, so guest
 * pids there showed whatever host processes had the same numbers): the host process that stands
 * for the container, its stand-in (the pid `state` reports).
 */
export async function psCommand(id: string, options: { format?: string }, global: GlobalOptions): Promise<void> {
  if (options.format !== "table" && options.format !== "json") {
    throw new MoatError("MOAT_CLI_FORMAT", `ps: --format: must be table or json, got "${options.format}"`, { status: Code.INVALID_ARGUMENT });
  }
  const [{ processes }, { pid: standIn }] = await withDaemon(global, async (client) => [await client.ps(id), await client.state(id)] as const);
  if (options.format === "json") {
    process.stdout.write(JSON.stringify(standIn > 0 ? [standIn] : []) + "\n");
    return;
  }
  const width = Math.max(3, ...processes.map(({ pid }) => String(pid).length));
  process.stdout.write([`${"PID".padStart(width)}   CMD`, ...processes.map(({ pid, command }) => `${String(pid).padStart(width)}   ${command}`)].join("\n") + "\n");
}

/** `update`: new Linux resources for the container's cgroup in its VM. */
export async function updateCommand(id: string, options: UpdateOptions, global: GlobalOptions): Promise<void> {
  const resources = updateResources(id, options);
  await withDaemon(global, (client) => client.update(id, resources));
}

function ociState(state: StateResponse) {
  return {
    ociVersion: state.ociVersion,
    id: state.id,
    pid: state.pid,
    status: state.status,
    bundle: state.bundle,
    created: state.created,
    owner: "",
  };
}
