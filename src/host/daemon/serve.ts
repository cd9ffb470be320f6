// Runs moatd: one process per state root that owns every sandbox under it, serving
// ContainerLifecycleService on <state root>/moatd.sock. A daemon started on demand by the CLI
// exits after it has owned no container for a while, so that none is left behind idle.
import { mkdir, rm } from "node:fs/promises";
import { connect, createServer } from "node:net";
import { ContainerLifecycleService } from "../../shared/protocol/index.js";
import { TtrpcServer } from "../../shared/ttrpc/index.js";
import type { Config } from "../config/index.js";
import { Daemon } from "./daemon.js";
import { lifecycleService } from "./lifecycle-service.js";
import { daemonSocketPath } from "./socket-path.js";

export interface ServeOptions {
  /** Exit after this long without containers; 0 to run until killed. */
  idleExitMs: number;
  log: (line: string) => void;
}

export async function serveDaemon(config: Config, options: ServeOptions): Promise<void> {
  const stateRoot = config.runtime.stateRoot;
  await mkdir(stateRoot, { recursive: true, mode: 0o711 });
  const path = daemonSocketPath(stateRoot);
  if (await answers(path)) {
    options.log(`another moatd serves ${path}; exiting`);
    return;
  }
  await rm(path, { force: true }); // a socket left by a daemon that died
  const daemon = new Daemon(config);
  await daemon.adoptAll(options.log);
  const ttrpc = new TtrpcServer();
  ttrpc.register(ContainerLifecycleService, lifecycleService(daemon));
  let clients = 0;
  const server = createServer((socket) => {
    clients++;
    ttrpc.serve(socket, `client-${clients}`).closed.then(() => clients--);
  });
  await new Promise<void>((resolve, reject) => server.once("error", reject).listen(path, resolve));
  options.log(`moatd ${process.pid} serving ${path}`);
  if (options.idleExitMs > 0) {
    let idleSince = Date.now();
    const timer = setInterval(() => {
      if (daemon.size > 0 || clients > 0) idleSince = Date.now();
      else if (Date.now() - idleSince >= options.idleExitMs) {
        clearInterval(timer);
        server.close();
        void rm(path, { force: true }).then(() => options.log("idle: exiting"));
      }
    }, Math.min(1000, options.idleExitMs));
  }
}

function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(path);
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}
