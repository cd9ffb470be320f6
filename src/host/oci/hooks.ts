// OCI hooks that run in the runtime's namespace (runtime-spec config.md, "POSIX-platform
// Hooks"): prestart, createRuntime, poststart and poststop run on the host, each given the
// container's state on stdin; createContainer and startContainer run in the container's
// namespaces, which are the guest's, so crun in the guest runs them (guestSpec keeps them).
// A hook is run as runc runs it: path, argv (args, whose first is argv[0]), exactly its env,
// the bundle as working directory, and its timeout in seconds, after which it is killed.
import { spawn } from "node:child_process";
import { MoatError } from "../../shared/errors.js";
import { Code } from "../../shared/ttrpc/index.js";
import type { OciSpec } from "./bundle.js";

/** The hooks the host runs; the spec's other two run in the guest. */
export type HostHookKind = "prestart" | "createRuntime" | "poststart" | "poststop";
export const HOST_HOOKS: readonly HostHookKind[] = ["prestart", "createRuntime", "poststart", "poststop"];
/** The hooks crun runs in the guest, in the container's namespaces. */
export const GUEST_HOOKS = ["createContainer", "startContainer"] as const;

export interface OciHook {
  path: string;
  args?: string[];
  env?: string[];
  /** Seconds. */
  timeout?: number;
}

/** The state a hook reads on stdin (runtime-spec runtime.md "State"). */
export interface HookState {
  ociVersion: string;
  id: string;
  status: "creating" | "created" | "running" | "stopped";
  /** The host process that stands for the container (moat's stand-in); 0 when there is none. */
  pid: number;
  bundle: string;
  annotations: Record<string, string>;
}

/** How much of a hook's stdout and stderr is kept for its error message. */
const OUTPUT_KEPT_BYTES = 4096;

/** The host's hooks of the spec (already checked by checkSpec: objects with an absolute path). */
export function hostHooks(spec: OciSpec): Partial<Record<HostHookKind, OciHook[]>> {
  const hooks = spec.hooks;
  if (typeof hooks !== "object" || hooks === null) return {};
  const found: Partial<Record<HostHookKind, OciHook[]>> = {};
  for (const kind of HOST_HOOKS) {
    const list = (hooks as Record<string, unknown>)[kind]; // an object, checked just above
    if (Array.isArray(list) && list.length > 0) found[kind] = list as OciHook[]; // checkSpec checked each entry's shape
  }
  return found;
}

/**
 * Whether the spec asks for a new network namespace without a path: the host process that
 * stands for the container (the stand-in, a containerd task's pid holder) is then started in a
 * new one of its own, which its host hooks fill and the sandbox is connected to.
 */
export function asksNewNetworkNamespace(spec: OciSpec): boolean {
  const namespaces = typeof spec.linux === "object" && spec.linux !== null ? (spec.linux as { namespaces?: unknown }).namespaces : undefined; // an object, checked by checkSpec
  return Array.isArray(namespaces) && namespaces.some((entry: unknown) => typeof entry === "object" && entry !== null && (entry as { type?: unknown }).type === "network" && !(entry as { path?: unknown }).path); // objects, checked by checkSpec
}

/**
 * The network namespace the spec names by path, if it names one by an absolute path (a bad
 * path is refused by guestSpec, naming it): the host process that stands for the container
 * enters it, so that host hooks given its pid act on that namespace, as on runc's process's.
 */
export function networkNamespacePath(spec: OciSpec): string | undefined {
  const namespaces = typeof spec.linux === "object" && spec.linux !== null ? (spec.linux as { namespaces?: unknown }).namespaces : undefined; // an object, checked by checkSpec
  if (!Array.isArray(namespaces)) return undefined;
  const entry: unknown = namespaces.find((item: unknown) => typeof item === "object" && item !== null && (item as { type?: unknown }).type === "network"); // objects, checked by checkSpec
  const path = typeof entry === "object" && entry !== null ? (entry as { path?: unknown }).path : undefined; // an object, found just above
  return typeof path === "string" && path.startsWith("/") ? path : undefined;
}

/** The spec's annotations as the state carries them. */
export function specAnnotations(spec: OciSpec): Record<string, string> {
  const annotations = spec.annotations;
  return typeof annotations === "object" && annotations !== null ? { ...(annotations as Record<string, string>) } : {}; // checkSpec: string values
}

/**
 * Runs `hooks` one after another with `state` on stdin; the first that fails (non-zero exit,
 * killed, timed out, cannot be started) throws MOAT_HOOK_FAILED naming it, and the rest are not
 * run, as runc does.
 */
export async function runHooks(kind: HostHookKind, hooks: OciHook[] | undefined, state: HookState, where: string): Promise<void> {
  for (const [index, hook] of (hooks ?? []).entries()) {
    await runHook(hook, state, `${where}: ${kind} hook #${index} (${hook.path})`);
  }
}

/** Runs the hooks as runHooks does, but a failure is handed to `warn` and the next one runs: poststart and poststop (runc logs those). */
export async function runHooksWarning(kind: HostHookKind, hooks: OciHook[] | undefined, state: HookState, where: string, warn: (line: string) => void): Promise<void> {
  for (const [index, hook] of (hooks ?? []).entries()) {
    await runHook(hook, state, `${where}: ${kind} hook #${index} (${hook.path})`).catch((error: unknown) => warn(`warning: ${error instanceof Error ? error.message : String(error)}`));
  }
}

function runHook(hook: OciHook, state: HookState, where: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const [argv0, ...args] = hook.args && hook.args.length > 0 ? hook.args : [hook.path];
    const env = Object.fromEntries((hook.env ?? []).map((entry) => {
      const equals = entry.indexOf("=");
      return equals < 0 ? [entry, ""] : [entry.slice(0, equals), entry.slice(equals + 1)];
    }));
    const child = spawn(hook.path, args, { argv0, env, cwd: state.bundle || "/", stdio: ["pipe", "pipe", "pipe"] });
    const output = { stdout: "", stderr: "" };
    const keep = (stream: "stdout" | "stderr") => (chunk: Buffer) => {
      output[stream] = (output[stream] + chunk.toString("utf8")).slice(-OUTPUT_KEPT_BYTES);
    };
    child.stdout.on("data", keep("stdout"));
    child.stderr.on("data", keep("stderr"));
    let timedOut = false;
    const timer = hook.timeout === undefined ? undefined : setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, hook.timeout * 1000);
    const fail = (what: string, cause?: unknown) => {
      const said = [output.stdout.trim() && `stdout: ${output.stdout.trim()}`, output.stderr.trim() && `stderr: ${output.stderr.trim()}`].filter(Boolean).join("; ");
      reject(new MoatError("MOAT_HOOK_FAILED", `${where}: ${what}${said ? ` (${said})` : ""}`, { cause, status: Code.FAILED_PRECONDITION }));
    };
    child.once("error", (error) => {
      clearTimeout(timer);
      fail("cannot be run", error);
    });
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      if (timedOut) fail(`did not finish within its timeout of ${hook.timeout} s; killed`);
      else if (signal) fail(`was killed by ${signal}`);
      else if (code !== 0) fail(`exited with status ${code}`);
      else resolve();
    });
    // A hook that does not read its stdin closes it: its exit status says whether it failed.
    child.stdin.on("error", () => undefined);
    child.stdin.end(JSON.stringify(state));
  });
}
