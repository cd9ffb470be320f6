// A containerd task as moatd keeps it on disk: the owner record the daemon saves in the task's
// sandbox state directory (container.json, src/host/daemon), so that a moatd restarted under a
// running task serves it again (the per-task relay keeps containerd's connection meanwhile:
// docs/design.md, "moatd restarts"). It holds what containerd told the shim and nothing the
// daemon or the guest already knows: bundle, namespace, TTRPC_ADDRESS, whether the shim mounted
// the rootfs, and each process's stdio, OCI process (execs), status and recorded exit.
import { MoatError } from "../../shared/errors.js";
import { isPlainObject } from "../../shared/json-object.js";
import { Code } from "../../shared/ttrpc/index.js";
import type { TaskPidRecord } from "../standin/index.js";
import type { ProcessStatus } from "./task-process.js";
import type { TaskIo } from "./task-stdio.js";

/** The front end name the daemon files these records under. */
export const TASK_FRONT_END = "containerd-task";

export interface ProcessRecord {
  /** "" for the task's init process. */
  execId: string;
  io: TaskIo;
  /** An exec'd process's OCI process object. */
  spec?: object;
  status: ProcessStatus;
  exit?: { exitStatus: number; exitedAt: string };
  /** The host process whose pid it reports (task-pid.ts); absent before it has one (and in records written before holders existed). */
  hostPid?: TaskPidRecord;
}

export interface TaskRecord {
  bundle: string;
  namespace: string;
  ttrpcAddress: string;
  /** The shim mounted containerd's rootfs mounts at <bundle>/rootfs, and unmounts them at delete. */
  rootfsMounted: boolean;
  init: ProcessRecord;
  execs: ProcessRecord[];
}

const STATUSES: readonly ProcessStatus[] = ["created", "running", "stopped"];

/**
 * Checks a record read back from disk. It is moatd's own file, but a record that does not
 * parse must fail that one task's adoption with a message saying what is wrong, not later
 * with a TypeError somewhere in the Task service.
 */
export function parseTaskRecord(value: unknown, where: string): TaskRecord {
  const invalid = (what: string) => new MoatError("MOAT_SHIM_RECORD", `${where}: saved task state: ${what}`, { status: Code.DATA_LOSS });
  const text = (object: Record<string, unknown>, key: string, path: string): string => {
    const field = object[key];
    if (typeof field !== "string") throw invalid(`${path}${key} must be a string`);
    return field;
  };
  const processOf = (candidate: unknown, path: string): ProcessRecord => {
    if (!isPlainObject(candidate) || !isPlainObject(candidate.io)) throw invalid(`${path} must be an object with io`);
    const io = candidate.io;
    const status = candidate.status as ProcessStatus; // checked on the next line
    if (!STATUSES.includes(status)) throw invalid(`${path}.status must be one of ${STATUSES.join(", ")}`);
    const exit = candidate.exit;
    if (exit !== undefined && (!isPlainObject(exit) || typeof exit.exitStatus !== "number" || typeof exit.exitedAt !== "string")) throw invalid(`${path}.exit must hold exitStatus and exitedAt`);
    if (candidate.spec !== undefined && !isPlainObject(candidate.spec)) throw invalid(`${path}.spec must be an object`);
    let hostPid: { pid: number; fifo: string } | undefined;
    if (candidate.hostPid !== undefined) {
      const { pid, fifo } = isPlainObject(candidate.hostPid) ? candidate.hostPid : { pid: undefined, fifo: undefined };
      if (typeof pid !== "number" || !Number.isSafeInteger(pid) || pid <= 0 || typeof fifo !== "string" || !fifo.startsWith("/")) throw invalid(`${path}.hostPid must hold a pid and an absolute fifo path`);
      hostPid = { pid, fifo };
    }
    return {
      execId: text(candidate, "execId", `${path}.`),
      io: { stdin: text(io, "stdin", `${path}.io.`), stdout: text(io, "stdout", `${path}.io.`), stderr: text(io, "stderr", `${path}.io.`), terminal: io.terminal === true },
      spec: candidate.spec,
      status,
      exit: exit ? { exitStatus: exit.exitStatus as number, exitedAt: exit.exitedAt as string } : undefined, // both checked above
      ...(hostPid ? { hostPid } : {}),
    };
  };
  if (!isPlainObject(value)) throw invalid("must be an object");
  if (!Array.isArray(value.execs)) throw invalid("execs must be an array");
  return {
    bundle: text(value, "bundle", ""),
    namespace: text(value, "namespace", ""),
    ttrpcAddress: text(value, "ttrpcAddress", ""),
    rootfsMounted: value.rootfsMounted === true,
    init: processOf(value.init, "init"),
    execs: value.execs.map((exec, index) => processOf(exec, `execs[${index}]`)),
  };
}
