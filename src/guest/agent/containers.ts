// The containers of this guest: each one's crun bundle, its process's stdio, and its exit.
//
// Create mounts the container's shares, writes the bundle (config.json, paths already rewritten
// for the guest by the host) and runs
// `crun create` with pipes for stdio, which the container process inherits; crun exits at
// once and the process waits for `crun start`. Its exit status comes from moat-init.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import type { Writable } from "node:stream";
import { MoatError } from "../../shared/errors.js";
import { containerGuestDir, type ShareMount } from "../../shared/protocol/index.js";
import { Code } from "../../shared/ttrpc/index.js";
import { crun, crunBinary, crunRoot } from "./crun.js";
import { mountShares, unmountShares } from "./mounts.js";
import { OutputBuffer } from "./output-buffer.js";
import { stdinSocketPair } from "./stdin-socket.js";
import type { ProcessExit, ProcessExits } from "./process-exits.js";

const VALID_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
/** The spec the host sends is one JSON document; a bound keeps a bad one from costing memory. */
const MAX_SPEC_BYTES = 1 << 20;

export interface CreateRequest {
  containerId: string;
  ociSpecJson: string;
  stdin: boolean;
  shares: ShareMount[];
}

interface Container {
  id: string;
  dir: string;
  shares: ShareMount[];
  pid: number;
  state: "created" | "running" | "stopped";
  exitStatus: number;
  stdin: Writable | undefined;
  stdout: OutputBuffer;
  stderr: OutputBuffer;
  exit: Promise<ProcessExit>;
}

export class Containers {
  private readonly containers = new Map<string, Container>();

  constructor(private readonly exits: ProcessExits) {}

  async create(request: CreateRequest): Promise<number> {
    const id = request.containerId;
    const where = `container ${id}`;
    if (!VALID_ID.test(id)) throw new MoatError("MOAT_CONTAINER_ID", `${where}: invalid container id`, { status: Code.INVALID_ARGUMENT });
    if (this.containers.has(id)) throw new MoatError("MOAT_CONTAINER_EXISTS", `${where}: already exists`, { status: Code.ALREADY_EXISTS });
    const spec = parseSpec(request.ociSpecJson, where);
    const dir = containerGuestDir(id);
    await mkdir(dir, { recursive: true });
    try {
      await mountShares(id, request.shares, where);
      await writeFile(`${dir}/config.json`, JSON.stringify(spec));
      const stdin = request.stdin ? await stdinSocketPair(dir) : undefined;
      const child = spawn(crunBinary, ["--root", crunRoot, "create", "--bundle", dir, "--pid-file", `${dir}/pid`, id], {
        stdio: [stdin ? stdin.remote : "ignore", "pipe", "pipe"],
      });
      stdin?.remote.destroy(); // crun and the container hold their own copies
      const stdout = new OutputBuffer(child.stdout!); // stdio[1] is "pipe"
      const stderr = new OutputBuffer(child.stderr!); // stdio[2] is "pipe"
      await exitOf(child, where, stderr).catch((error: unknown) => {
        stdin?.local.destroy();
        throw error;
      });
      const pid = Number((await readFile(`${dir}/pid`, "utf8")).trim());
      stdin?.local.on("error", () => undefined); // a container that exits without reading resets it; WriteStdin reports that
      this.containers.set(id, { id, dir, shares: request.shares, pid, state: "created", exitStatus: 0, stdin: stdin?.local, stdout, stderr, exit: this.exits.wait(pid) });
      const container = this.containers.get(id)!; // just set
      container.exit.then((exit) => {
        container.state = "stopped";
        container.exitStatus = exit.exitStatus;
      });
      return pid;
    } catch (error) {
      await unmountShares(id, request.shares);
      await rm(dir, { recursive: true, force: true });
      throw error;
    }
  }

  async start(id: string): Promise<void> {
    const container = this.get(id);
    if (container.state !== "created") throw new MoatError("MOAT_CONTAINER_STATE", `container ${id}: cannot start a ${container.state} container`, { status: Code.FAILED_PRECONDITION });
    await crun(id, ["start", id]);
    if (container.state === "created") container.state = "running";
  }

  async signal(id: string, signal: number, all: boolean): Promise<void> {
    const container = this.get(id);
    if (container.state === "stopped") return; // signalling a process that is gone is not an error for the caller
    await crun(id, ["kill", ...(all ? ["--all"] : []), id, String(signal)]);
  }

  status(id: string): { status: string; pid: number; exitStatus: number } {
    const container = this.get(id);
    return { status: container.state, pid: container.pid, exitStatus: container.exitStatus };
  }

  wait(id: string): Promise<ProcessExit> {
    return this.get(id).exit;
  }

  async remove(id: string): Promise<void> {
    const container = this.containers.get(id);
    if (!container) return; // removing what is gone counts as done
    await crun(id, ["delete", "--force", id]).catch(() => undefined);
    container.stdin?.destroy();
    await unmountShares(id, container.shares);
    await rm(container.dir, { recursive: true, force: true });
    this.containers.delete(id);
  }

  output(id: string, stream: "stdout" | "stderr"): OutputBuffer {
    return this.get(id)[stream];
  }

  stdin(id: string): Writable {
    const stdin = this.get(id).stdin;
    if (!stdin) throw new MoatError("MOAT_CONTAINER_STDIN", `container ${id}: created without stdin`, { status: Code.FAILED_PRECONDITION });
    return stdin;
  }

  private get(id: string): Container {
    const container = this.containers.get(id);
    if (!container) throw new MoatError("MOAT_CONTAINER_NOT_FOUND", `container ${id}: not found`, { status: Code.NOT_FOUND });
    return container;
  }
}

interface OciSpec {
  root?: { path?: string; readonly?: boolean };
  process?: { terminal?: boolean; args?: unknown };
  [key: string]: unknown;
}

function parseSpec(json: string, where: string): OciSpec {
  if (json.length > MAX_SPEC_BYTES) throw new MoatError("MOAT_CONTAINER_SPEC", `${where}: OCI spec larger than ${MAX_SPEC_BYTES} bytes`, { status: Code.INVALID_ARGUMENT });
  let spec: unknown;
  try {
    spec = JSON.parse(json);
  } catch (error) {
    throw new MoatError("MOAT_CONTAINER_SPEC", `${where}: OCI spec is not JSON`, { cause: error, status: Code.INVALID_ARGUMENT });
  }
  if (typeof spec !== "object" || spec === null || Array.isArray(spec)) throw new MoatError("MOAT_CONTAINER_SPEC", `${where}: OCI spec is not an object`, { status: Code.INVALID_ARGUMENT });
  const typed = spec as OciSpec; // checked to be a plain object; crun validates the rest
  if (typed.process?.terminal) throw new MoatError("MOAT_CONTAINER_SPEC", `${where}: process.terminal: terminals are not supported yet`, { status: Code.UNIMPLEMENTED });
  return typed;
}

/** Waits for `crun create` to exit; rejects with what crun wrote if it failed. */
function exitOf(child: ChildProcess, where: string, stderr: OutputBuffer): Promise<void> {
  return new Promise((resolve, reject) => {
    child.once("error", (error) => reject(new MoatError("MOAT_CRUN_FAILED", `${where}: cannot run crun`, { cause: error, status: Code.INTERNAL })));
    child.once("exit", async (code) => {
      if (code === 0) return resolve();
      const { data } = await stderr.read(4096, AbortSignal.timeout(1000));
      const said = data.toString().trim().split("\n").slice(-3).join("; ") || `exit status ${code}`;
      reject(new MoatError("MOAT_CRUN_FAILED", `${where}: crun create failed: ${said}`, { status: Code.FAILED_PRECONDITION }));
    });
  });
}
