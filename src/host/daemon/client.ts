// The front ends' way to moatd: connect to its socket, starting the daemon first if none
// answers. The daemon runs in its own session with its log in <state root>/moatd.log.
import { spawn } from "node:child_process";
import { mkdirSync, openSync, closeSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { MoatError } from "../../shared/errors.js";
import { ContainerLifecycleService } from "../../shared/protocol/index.js";
import { Code, connectUnix, TtrpcClient } from "../../shared/ttrpc/index.js";
import { packageRoot, type Config } from "../config/index.js";
import { discardSandbox, type WarmPool } from "../sandbox/index.js";
import { daemonSocketPath } from "./socket-path.js";

const START_TIMEOUT_MS = 10_000;
/** Booting a VM under TCG takes seconds; creating a container adds crun and mounts. */
const CREATE_TIMEOUT_MS = 120_000;
const CALL_TIMEOUT_MS = 60_000;

export interface DaemonStart {
  stateRoot: string;
  configPath: string | undefined;
}

export class DaemonClient {
  constructor(private readonly ttrpc: TtrpcClient) {}

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

  create(containerId: string, bundle: string) {
    return this.ttrpc.call(ContainerLifecycleService.method.create, { containerId, bundle }, { timeoutMs: CREATE_TIMEOUT_MS });
  }
  exec(containerId: string, execId: string, process: object) {
    return this.ttrpc.call(ContainerLifecycleService.method.exec, { containerId, execId, processJson: JSON.stringify(process) }, { timeoutMs: CREATE_TIMEOUT_MS });
  }
  start(containerId: string) {
    return this.ttrpc.call(ContainerLifecycleService.method.start, { containerId }, { timeoutMs: CALL_TIMEOUT_MS });
  }
  state(containerId: string) {
    return this.ttrpc.call(ContainerLifecycleService.method.state, { containerId }, { timeoutMs: CALL_TIMEOUT_MS });
  }
  kill(containerId: string, signal: number, all: boolean) {
    return this.ttrpc.call(ContainerLifecycleService.method.kill, { containerId, signal, all }, { timeoutMs: CALL_TIMEOUT_MS });
  }
  pause(containerId: string) {
    return this.ttrpc.call(ContainerLifecycleService.method.pause, { containerId }, { timeoutMs: CALL_TIMEOUT_MS });
  }
  resume(containerId: string) {
    return this.ttrpc.call(ContainerLifecycleService.method.resume, { containerId }, { timeoutMs: CALL_TIMEOUT_MS });
  }
  delete(containerId: string, force: boolean) {
    return this.ttrpc.call(ContainerLifecycleService.method.delete, { containerId, force }, { timeoutMs: CALL_TIMEOUT_MS });
  }
  list() {
    return this.ttrpc.call(ContainerLifecycleService.method.list, {}, { timeoutMs: CALL_TIMEOUT_MS });
  }
  ps(containerId: string) {
    return this.ttrpc.call(ContainerLifecycleService.method.ps, { containerId }, { timeoutMs: CALL_TIMEOUT_MS });
  }
  update(containerId: string, resources: object) {
    return this.ttrpc.call(ContainerLifecycleService.method.update, { containerId, resourcesJson: JSON.stringify(resources) }, { timeoutMs: CALL_TIMEOUT_MS });
  }

  takePooledVm(sandboxId: string, templateKey: string) {
    return this.ttrpc.call(ContainerLifecycleService.method.takePooledVm, { sandboxId, templateKey }, { timeoutMs: CALL_TIMEOUT_MS });
  }

  close(): void {
    this.ttrpc.close();
  }
}

/**
 * The warm pool of the moatd serving `start.stateRoot`, for a sandbox this process starts
 * itself (`moat run`); moatd is started if none answers, and then fills its pool.
 */
export function daemonPool(start: DaemonStart): WarmPool {
  return {
    async prepare() {
      (await DaemonClient.connect(start)).close(); // moatd answers only once it has adopted what it found
    },
    async take(sandboxId, templateKey) {
      const client = await DaemonClient.connect(start);
      try {
        const { taken, reason } = await client.takePooledVm(sandboxId, templateKey);
        return taken ? { taken } : { taken, reason };
      } finally {
        client.close();
      }
    },
  };
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
  const log = openSync(join(start.stateRoot, "moatd.log"), "a");
  try {
    const args = [join(packageRoot(), "dist", "bundle", "moatd.mjs"), "--root", start.stateRoot, ...(start.configPath ? ["--config", start.configPath] : [])];
    spawn(process.execPath, args, { detached: true, stdio: ["ignore", log, log] }).unref();
  } finally {
    closeSync(log);
  }
}
