// The OCI runtime commands, as runc's callers use them (conmon, containerd's runc shim with a
// custom binary): create, start, state, kill, delete, list. Each is a thin call to moatd.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { MoatError } from "../../shared/errors.js";
import type { StateResponse } from "../../shared/protocol/index.js";
import { Code } from "../../shared/ttrpc/index.js";
import { loadConfig, packageRoot } from "../config/index.js";
import { DaemonClient } from "../daemon/index.js";
import { withOverrides, type GlobalOptions } from "./global-options.js";
import { parseSignal } from "./signals.js";

export interface CreateOptions {
  bundle?: string;
  pidFile?: string;
  consoleSocket?: string;
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

/** `create`: the container's VM boots and its process waits; a stand-in holds its stdio. */
export async function createCommand(id: string, options: CreateOptions, global: GlobalOptions): Promise<void> {
  if (options.consoleSocket) {
    throw new MoatError("MOAT_CLI_TERMINAL", `container ${id}: --console-socket: terminals are not supported yet`, { status: Code.UNIMPLEMENTED });
  }
  const standIn = join(packageRoot(), "dist", "bin", "moat-standin");
  if (!existsSync(standIn)) throw new MoatError("MOAT_CLI_STANDIN", `${standIn} is not built`, { hint: "make build", status: Code.FAILED_PRECONDITION });
  await withDaemon(global, async (client) => {
    const { stdioSocket } = await client.create(id, resolve(options.bundle ?? process.cwd()));
    try {
      // The stand-in inherits this process's stdio, which the caller gave the container.
      const child = spawn(standIn, [stdioSocket], { stdio: "inherit", detached: true });
      const pid = await new Promise<number>((resolvePid, reject) => {
        child.once("spawn", () => resolvePid(child.pid!)); // a spawned child has a pid
        child.once("error", reject);
      });
      child.unref();
      if (options.pidFile) await writeFile(resolve(options.pidFile), String(pid));
    } catch (error) {
      await client.delete(id, true).catch(() => undefined);
      throw new MoatError("MOAT_CLI_STANDIN", `container ${id}: cannot start the stand-in process`, { cause: error, status: Code.INTERNAL });
    }
  });
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
