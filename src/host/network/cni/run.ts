// Running a network configuration list (CNI spec 1.0.0, section 3): ADD runs each plugin in
// order, each given the previous one's result as prevResult; DEL runs them in reverse. An ADD
// that fails part way deletes what the plugins before it (and the failing one, whose DEL must
// tolerate what it did not make) added, then reports the plugin that failed.
import { spawn } from "node:child_process";
import { constants } from "node:fs";
import { access } from "node:fs/promises";
import { join } from "node:path";
import { MoatError } from "../../../shared/errors.js";
import { tracer } from "../../../shared/trace.js";
import { Code } from "../../../shared/ttrpc/index.js";
import type { CniNetwork } from "./conflist.js";
import { checkAttachment, parseResult, pluginConfig, pluginEnv, pluginFailure, type CniAttachment, type CniCommand, type CniResult } from "./protocol.js";

const trace = tracer("network");

/** Where Debian's containernetworking-plugins are, then the upstream default. */
export const DEFAULT_CNI_PATH: readonly string[] = ["/usr/lib/cni", "/opt/cni/bin"];
export const DEFAULT_CNI_CONF_DIR = "/etc/cni/net.d";
/** A plugin that has not answered by then is killed (it may be waiting on a lock forever). */
const PLUGIN_TIMEOUT_MS = 120_000;
/** A result is a few kB; a plugin printing more is broken. */
const MAX_OUTPUT_BYTES = 1024 * 1024;

interface Exited {
  stdout: string;
  stderr: string;
  /** "exit status N" or "killed by SIGNAL". */
  exit: string;
  ok: boolean;
}

/** Finds plugin `type` in the CNI path: the first executable file of that name. */
async function findPlugin(type: string, cniPath: string[]): Promise<string | undefined> {
  for (const dir of cniPath) {
    const path = join(dir, type);
    if (await access(path, constants.X_OK).then(() => true, () => false)) return path;
  }
  return undefined;
}

function execPlugin(path: string, env: Record<string, string>, config: Record<string, unknown>): Promise<Exited> {
  return new Promise((resolve, reject) => {
    const child = spawn(path, [], { env: { PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin", ...env }, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    let overflow = false;
    const take = (chunk: string, into: "stdout" | "stderr") => {
      if (stdout.length + stderr.length + chunk.length > MAX_OUTPUT_BYTES) {
        overflow = true;
        child.kill("SIGKILL");
        return;
      }
      if (into === "stdout") stdout += chunk;
      else stderr += chunk;
    };
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => take(chunk, "stdout"));
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => take(chunk, "stderr"));
    const timer = setTimeout(() => child.kill("SIGKILL"), PLUGIN_TIMEOUT_MS);
    child.once("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      const exit = overflow ? `printed more than ${MAX_OUTPUT_BYTES} bytes` : signal !== null ? `killed by ${signal}${signal === "SIGKILL" ? ` (no answer within ${PLUGIN_TIMEOUT_MS} ms?)` : ""}` : `exit status ${code}`;
      resolve({ stdout, stderr, exit, ok: code === 0 && !overflow });
    });
    child.stdin.on("error", () => undefined); // a plugin that exits without reading: its exit says why
    child.stdin.end(JSON.stringify(config));
  });
}

/** Runs plugin `index` of `network` for `command`; returns what it printed (ADD: its result). */
async function runPlugin(network: CniNetwork, index: number, command: CniCommand, attachment: CniAttachment, prevResult: CniResult | undefined): Promise<CniResult | undefined> {
  const { conflist, file } = network;
  const type = conflist.plugins[index]?.type ?? "";
  const where = `CNI network ${conflist.name} (${file}): plugin ${type} (plugins[${index}]) ${command} for ${attachment.containerId}`;
  const path = await findPlugin(type, attachment.cniPath);
  if (path === undefined) {
    throw new MoatError("MOAT_CNI_PLUGIN_MISSING", `${where}: no executable ${type} in ${attachment.cniPath.join(", ")}`, {
      hint: "install containernetworking-plugins, or pass the directory holding the plugin",
      status: Code.FAILED_PRECONDITION,
    });
  }
  const startedAt = performance.now();
  const exited = await execPlugin(path, pluginEnv(command, attachment), pluginConfig(conflist, index, command, prevResult, attachment.capabilityArgs)).catch((error: unknown) => {
    throw new MoatError("MOAT_CNI_PLUGIN", `${where}: ${path} could not be run`, { cause: error, status: Code.INTERNAL });
  });
  trace(attachment.containerId, `${conflist.name}: ${type} ${command} ${exited.exit} in ${Math.round(performance.now() - startedAt)} ms`);
  if (!exited.ok) throw new MoatError("MOAT_CNI_PLUGIN", `${where}: ${pluginFailure(exited.stdout, exited.stderr, exited.exit)}`, { status: Code.INTERNAL });
  return command === "ADD" ? parseResult(exited.stdout, where) : undefined;
}

/**
 * Adds the container to `network` (CNI ADD of each plugin, in order, prevResult chained) and
 * returns the last plugin's result. On a failure, what was added is deleted (DEL in reverse,
 * from the failing plugin down) and the plugin's error is thrown, with any DEL that failed too.
 */
export async function cniAdd(network: CniNetwork, attachment: CniAttachment): Promise<CniResult> {
  checkAttachment(attachment, `CNI network ${network.conflist.name} (${network.file})`);
  let result: CniResult | undefined;
  for (let index = 0; index < network.conflist.plugins.length; index += 1) {
    try {
      result = await runPlugin(network, index, "ADD", attachment, result);
    } catch (error) {
      // The failing plugin may have made part of its work; one that could not be found made nothing.
      const from = error instanceof MoatError && error.code === "MOAT_CNI_PLUGIN_MISSING" ? index - 1 : index;
      const undone = await deleteFrom(network, from, attachment, result);
      if (undone.length === 0) throw error;
      throw new MoatError(error instanceof MoatError ? error.code : "MOAT_CNI_PLUGIN", `${error instanceof Error ? error.message : String(error)}; and undoing it: ${undone.join("; ")}`, { status: Code.INTERNAL });
    }
  }
  // checkConflist refuses an empty list, so the loop ran at least once and set result.
  if (result === undefined) throw new MoatError("MOAT_CNI_RESULT", `CNI network ${network.conflist.name} (${network.file}): no plugin gave a result`, { status: Code.INTERNAL });
  trace(attachment.containerId, `${network.conflist.name}: added ${attachment.ifName} in ${attachment.netns}`);
  return result;
}

/** DEL of plugins `from` down to 0; returns the failures, one line each. */
async function deleteFrom(network: CniNetwork, from: number, attachment: CniAttachment, prevResult: CniResult | undefined): Promise<string[]> {
  const failures: string[] = [];
  for (let index = from; index >= 0; index -= 1) {
    try {
      await runPlugin(network, index, "DEL", attachment, prevResult);
    } catch (error) {
      failures.push(error instanceof Error ? error.message : String(error));
    }
  }
  return failures;
}

/**
 * Deletes the container from `network` (CNI DEL of each plugin, in reverse), `prevResult`
 * being what ADD returned when it is known. Every plugin is run even if one fails; the
 * failures are thrown together. DEL of what is gone succeeds (the spec requires it of plugins).
 */
export async function cniDel(network: CniNetwork, attachment: CniAttachment, prevResult: CniResult | undefined): Promise<void> {
  checkAttachment(attachment, `CNI network ${network.conflist.name} (${network.file})`);
  const failures = await deleteFrom(network, network.conflist.plugins.length - 1, attachment, prevResult);
  if (failures.length > 0) throw new MoatError("MOAT_CNI_PLUGIN", failures.join("; "), { status: Code.INTERNAL });
  trace(attachment.containerId, `${network.conflist.name}: deleted ${attachment.ifName} from ${attachment.netns}`);
}
