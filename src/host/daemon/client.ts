// The front ends' way to moatd: connect to its socket, starting the daemon first if none
// answers. The daemon runs in its own session with its log in <state root>/moatd.log, started
// through moatd-launch (src/host/moatd/moatd-launch.c), which leaves it only stdin, stdout and
// stderr: a caller's other descriptors (conmon's, a shell's) never reach moatd, and through it
// QEMU and virtiofsd. moatd's answers that are errors become this process's errors, with
// their hints.
import { spawn } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { DescMethod, MessageInitShape, MessageShape } from "@bufbuild/protobuf";
import { MoatError } from "../../shared/errors.js";
import { ContainerLifecycleService } from "../../shared/protocol/index.js";
import { Code, connectUnix, TtrpcClient, TtrpcStatusError } from "../../shared/ttrpc/index.js";
import { packageRoot, type Config } from "../config/index.js";
import { discardSandbox } from "../sandbox/index.js";
import { HINT_SEPARATOR } from "./lifecycle-service.js";
import { daemonSocketPath } from "./socket-path.js";

const START_TIMEOUT_MS = 10_000;
/** Booting a VM under TCG takes seconds; creating a container adds crun and mounts. */
const CREATE_TIMEOUT_MS = 120_000;
const CALL_TIMEOUT_MS = 60_000;

export interface DaemonStart {
  stateRoot: string;
  configPath: string | undefined;
}

export interface RunCall {
  containerId: string;
  bundle?: string;
  image?: string;
  args?: string[];
  terminal: boolean;
  rows?: number;
  columns?: number;
  stdin: boolean;
  vcpus?: number;
  memoryMib?: number;
  configPath?: string;
  networks?: string[];
  cniConfDir?: string;
  publish?: string[];
  /** The host process that stands for a bundle's container, whose pid its host hooks get (0: none). */
  standInPid?: number;
}

export class DaemonClient {
  constructor(private readonly ttrpc: TtrpcClient) {}

  /** One call; an error status comes back as moatd's own error (message and hint), not the transport's. */
  private async call<M extends DescMethod & { methodKind: "unary" }>(method: M, input: MessageInitShape<M["input"]>, timeoutMs: number): Promise<MessageShape<M["output"]>> {
    try {
      return await this.ttrpc.call(method, input, { timeoutMs });
    } catch (error) {
      if (!(error instanceof TtrpcStatusError)) throw error;
      const [message, hint] = error.remoteMessage.split(HINT_SEPARATOR, 2);
      throw new MoatError("MOAT_DAEMON_ERROR", message ?? "", { status: error.status, hint }); // split always yields a first element
    }
  }

  static async connect(start: DaemonStart): Promise<DaemonClient> {
    const path = daemonSocketPath(start.stateRoot);
    const socket = await connectUnix(path).catch(async () => {
      spawnDaemon(start);
      const deadline = Date.now() + START_TIMEOUT_MS;
      for (;;) {
        try {
          return await connectUnix(path);
        } catch (error) {
          if (Date.now() > deadline) {
            throw new MoatError("MOAT_DAEMON_START", `moatd: did not answer on ${path} within ${START_TIMEOUT_MS} ms`, {
              cause: error,
              hint: `see ${join(start.stateRoot, "moatd.log")}`,
              status: Code.UNAVAILABLE,
            });
          }
          await sleep(20);
        }
      }
    });
    return new DaemonClient(new TtrpcClient(socket, `moatd ${path}`));
  }

  /** `standInPid`: the stand-in already started for the container, whose pid the host's hooks get (0: none). */
  create(containerId: string, bundle: string, standInPid = 0, cni: { networks?: string[]; cniConfDir?: string; publish?: string[] } = {}) {
    return this.call(ContainerLifecycleService.method.create, { containerId, bundle, standInPid, ...cni }, CREATE_TIMEOUT_MS);
  }
  exec(containerId: string, execId: string, process: object) {
    return this.call(ContainerLifecycleService.method.exec, { containerId, execId, processJson: JSON.stringify(process) }, CREATE_TIMEOUT_MS);
  }
  start(containerId: string) {
    return this.call(ContainerLifecycleService.method.start, { containerId }, CALL_TIMEOUT_MS);
  }
  state(containerId: string) {
    return this.call(ContainerLifecycleService.method.state, { containerId }, CALL_TIMEOUT_MS);
  }
  kill(containerId: string, signal: number, all: boolean) {
    return this.call(ContainerLifecycleService.method.kill, { containerId, signal, all }, CALL_TIMEOUT_MS);
  }
  pause(containerId: string) {
    return this.call(ContainerLifecycleService.method.pause, { containerId }, CALL_TIMEOUT_MS);
  }
  resume(containerId: string) {
    return this.call(ContainerLifecycleService.method.resume, { containerId }, CALL_TIMEOUT_MS);
  }
  delete(containerId: string, force: boolean) {
    return this.call(ContainerLifecycleService.method.delete, { containerId, force }, CALL_TIMEOUT_MS);
  }
  list() {
    return this.call(ContainerLifecycleService.method.list, {}, CALL_TIMEOUT_MS);
  }
  ps(containerId: string) {
    return this.call(ContainerLifecycleService.method.ps, { containerId }, CALL_TIMEOUT_MS);
  }
  update(containerId: string, resources: object) {
    return this.call(ContainerLifecycleService.method.update, { containerId, resourcesJson: JSON.stringify(resources) }, CALL_TIMEOUT_MS);
  }

  run(request: RunCall) {
    return this.call(ContainerLifecycleService.method.run, request, CREATE_TIMEOUT_MS);
  }
  boot(sandboxId: string, configPath: string | undefined) {
    return this.call(ContainerLifecycleService.method.boot, { sandboxId, configPath }, CREATE_TIMEOUT_MS);
  }

  close(): void {
    this.ttrpc.close();
  }
}

/**
 * Removes a container for a front end that believes its server dead (containerd's `shim
 * delete`): through moatd if one answers (it may still own the container), else by killing the
 * sandbox's QEMU and removing its state directly. Starting a daemon for this would make it adopt
 * the sandbox first, and containerd gives the clean-up only 5 s. Nothing left counts as done.
 */
export async function removeContainer(config: Config, id: string): Promise<void> {
  const socket = await connectUnix(daemonSocketPath(config.runtime.stateRoot)).catch(() => undefined);
  if (!socket) return discardSandbox(config, id);
  const client = new DaemonClient(new TtrpcClient(socket, `moatd ${config.runtime.stateRoot}`));
  try {
    await client.delete(id, true).catch((error: unknown) => {
      if (!(error instanceof MoatError && error.status === Code.NOT_FOUND)) throw error;
    });
  } finally {
    client.close();
  }
}

function spawnDaemon(start: DaemonStart): void {
  mkdirSync(start.stateRoot, { recursive: true, mode: 0o711 });
  const launcher = join(packageRoot(), "dist", "bin", "moatd-launch");
  if (!existsSync(launcher)) throw new MoatError("MOAT_DAEMON_START", `${launcher} is not built`, { hint: "make build", status: Code.FAILED_PRECONDITION });
  const args = [join(start.stateRoot, "moatd.log"), process.execPath, join(packageRoot(), "dist", "bundle", "moatd.mjs"), "--root", start.stateRoot, ...(start.configPath ? ["--config", start.configPath] : [])];
  // The launcher forks moatd off and exits at once; its failure shows as moatd not answering.
  spawn(launcher, args, { stdio: "ignore" }).on("error", () => undefined).unref();
}
