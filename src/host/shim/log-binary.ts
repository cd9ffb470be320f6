// A `binary://` log URI (`ctr run --log-uri binary:///path/to/logger?key=value`): containerd's
// logging-binary convention. The shim starts the program with the process's stdout on fd 3,
// its stderr on fd 4 and a readiness pipe on fd 5, which the program closes once it is ready
// to read; CONTAINER_ID and CONTAINER_NAMESPACE name the task, and each query parameter
// becomes two arguments (key, value).
import { spawn } from "node:child_process";
import type { Readable, Writable } from "node:stream";
import { fileURLToPath } from "node:url";
import { settleWithin } from "../../shared/deadline.js";
import { MoatError } from "../../shared/errors.js";
import { Code } from "../../shared/ttrpc/index.js";

const READY_TIMEOUT_MS = 10_000;

export interface LogOwner {
  id: string;
  namespace: string;
}

export async function startLogBinary(uri: string, owner: LogOwner, where: string): Promise<{ stdout: Writable; stderr: Writable }> {
  const url = new URL(uri);
  const path = fileURLToPath(`file://${url.pathname}`);
  const args = [...url.searchParams.entries()].flatMap(([key, value]) => (value ? [key, value] : [key]));
  const child = spawn(path, args, {
    env: { ...process.env, CONTAINER_ID: owner.id, CONTAINER_NAMESPACE: owner.namespace },
    stdio: ["ignore", "ignore", "ignore", "pipe", "pipe", "pipe"],
  });
  const pipes = child.stdio as unknown as Array<Readable & Writable>; // Node types five entries; the spawn above asked for pipes at 3, 4 and 5
  const [stdout, stderr, ready] = [pipes[3]!, pipes[4]!, pipes[5]!]; // the same three pipes
  for (const stream of [stdout, stderr, ready]) stream.on("error", () => undefined); // a logger that goes away loses output, not the task
  const failed = new Promise<Error>((resolve) => child.once("error", resolve).once("exit", (code) => resolve(new Error(`exited with status ${code}`))));
  ready.resume();
  const readied = new Promise<"ready">((resolve) => ready.once("close", () => resolve("ready")));
  const outcome = await settleWithin(Promise.race([readied, failed]), READY_TIMEOUT_MS);
  if (outcome !== "ready") {
    child.kill("SIGKILL");
    throw new MoatError("MOAT_SHIM_STDIO", `${where}: log binary ${path} did not get ready`, { cause: outcome ?? new Error(`no signal on fd 5 within ${READY_TIMEOUT_MS} ms`), status: Code.FAILED_PRECONDITION });
  }
  return { stdout, stderr };
}
