// Runs moatd: one process per state root that owns every sandbox under it, serving
// ContainerLifecycleService on <state root>/moatd.sock, and each front end's services (the
// containerd Task service, src/host/shim) on the front end's own socket there. A daemon started on demand by the CLI
// exits after it has owned no container for a while, so that none is left behind idle,
// unless it keeps a warm pool ([factory] vm_cache_number): keeping VMs ready is then its job.
// Its pool's VMs are killed when it exits (idle, or SIGTERM/SIGINT); its sandboxes are not.
import { mkdir, rm } from "node:fs/promises";
import { connect, createServer, type Server } from "node:net";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { ContainerLifecycleService } from "../../shared/protocol/index.js";
import { TtrpcServer } from "../../shared/ttrpc/index.js";
import type { Config } from "../config/index.js";
import { takeDaemonLock, type DaemonLock } from "./daemon-lock.js";
import { VmPool } from "../factory/index.js";
import { vmBase } from "../sandbox/index.js";
import { Daemon } from "./daemon.js";
import { lifecycleService } from "./lifecycle-service.js";
import { DAEMON_SOCKET_NAME_MAX_BYTES, daemonSocketPath } from "./socket-path.js";

/** A front end moatd serves beside its own API: its ttrpc services on its own socket. */
export interface FrontEnd {
  /** The socket's file name under the state root: at most DAEMON_SOCKET_NAME_MAX_BYTES. */
  socketName: string;
  /** Registers its services, and its adopter on the daemon (called before the daemon adopts). */
  register(server: TtrpcServer, daemon: Daemon, log: (line: string) => void): void;
}

export interface ServeOptions {
  /** Exit after this long without containers; 0 to run until killed. */
  idleExitMs: number;
  log: (line: string) => void;
  frontEnds?: FrontEnd[];
}

/** How long a starting moatd waits for the lock held by one that stopped answering (exiting idle). */
const LOCK_WAIT_MS = 5_000;
const LOCK_RETRY_MS = 100;

export async function serveDaemon(config: Config, options: ServeOptions): Promise<void> {
  const stateRoot = config.runtime.stateRoot;
  await mkdir(stateRoot, { recursive: true, mode: 0o711 });
  const path = daemonSocketPath(stateRoot);
  // Another moatd holds the lock while it serves and, exiting idle, for a moment after it
  // stopped answering: wait that moment out.
  const deadline = Date.now() + LOCK_WAIT_MS;
  let lock: DaemonLock | undefined;
  while (!(lock = await takeDaemonLock(stateRoot))) {
    if ((await answers(path)) || Date.now() > deadline) {
      options.log(`another moatd serves ${stateRoot}; exiting`);
      return;
    }
    await sleep(LOCK_RETRY_MS);
  }
  const pool =
    config.factory.vmCacheNumber > 0 || config.factory.vmCacheNetworked > 0
      ? new VmPool({ config, base: (nics) => vmBase(config, { nics }), log: options.log })
      : undefined;
  const daemon = new Daemon(config, options.log, pool);
  // Front ends register first: their adopters take back the containers they own.
  const frontEnds = (options.frontEnds ?? []).map((frontEnd) => {
    const ttrpc = new TtrpcServer();
    frontEnd.register(ttrpc, daemon, options.log);
    return { frontEnd, ttrpc };
  });
  // The sandboxes found are registered before this daemon listens, and adopted while it
  // serves: a request for one waits for its adoption, others are answered at once.
  const adoption = await daemon.adoptAll();
  // The pool's restores would compete with the adoptions for the CPU.
  void adoption.done.then(() => pool?.start());
  const exitWithPool = async (why: string) => {
    await pool?.stop();
    options.log(`${why}: exiting`);
  };
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    // Sandboxes stay (a restarted daemon adopts them); only the pool goes, with this daemon.
    process.once(signal, () => void exitWithPool(signal).finally(() => process.exit(0)));
  }
  let clients = 0;
  let connections = 0;
  const listen = async (socketPath: string, ttrpc: TtrpcServer): Promise<Server> => {
    await rm(socketPath, { force: true }); // a socket left by a daemon that died
    const server = createServer((socket) => {
      clients++;
      ttrpc.serve(socket, `client-${++connections}`).closed.then(() => clients--);
    });
    await new Promise<void>((resolve, reject) => server.once("error", reject).listen(socketPath, resolve));
    return server;
  };
  // The front ends first: a client that finds moatd.sock answering may rely on them.
  const servers: Array<{ server: Server; path: string }> = [];
  for (const { frontEnd, ttrpc } of frontEnds) {
    // daemonSocketPath checked that the state root leaves room for a name this long.
    if (Buffer.byteLength(frontEnd.socketName) > DAEMON_SOCKET_NAME_MAX_BYTES) throw new Error(`front end socket name ${frontEnd.socketName}: longer than ${DAEMON_SOCKET_NAME_MAX_BYTES} bytes`);
    const socketPath = join(stateRoot, frontEnd.socketName);
    servers.push({ server: await listen(socketPath, ttrpc), path: socketPath });
  }
  const ttrpc = new TtrpcServer();
  ttrpc.register(ContainerLifecycleService, lifecycleService(daemon));
  servers.push({ server: await listen(path, ttrpc), path });
  options.log(`moatd ${process.pid} serving ${servers.map((served) => served.path).join(", ")}`);
  if (options.idleExitMs > 0 && !pool) {
    let idleSince = Date.now();
    const timer = setInterval(() => {
      if (daemon.size > 0 || clients > 0) idleSince = Date.now();
      else if (Date.now() - idleSince >= options.idleExitMs) {
        clearInterval(timer);
        for (const served of servers) served.server.close();
        void Promise.all(servers.map((served) => rm(served.path, { force: true }))).then(() => {
          lock.release();
          options.log("idle: exiting");
        });
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
