// moat-agent: the process moat-init starts inside every guest. It serves the agent API over
// ttrpc on a unix socket, to which moat-init's relay connects once per host session on the
// virtio-serial port "agent.0", and logs to the port "log.0".
import { rm } from "node:fs/promises";
import { createServer } from "node:net";
import { startupSnapshot } from "node:v8";
import { ContainerService, GuestService, HealthService, IoService, NetworkService, OomService, PortForwardService, StatsService } from "../../shared/protocol/index.js";
import { TtrpcServer } from "../../shared/ttrpc/index.js";
import { setTraceSink } from "../../shared/trace.js";
import { MOAT_VERSION } from "../../shared/version.js";
import { containerService } from "./container-service.js";
import { Containers } from "./containers.js";
import { guestService } from "./guest-service.js";
import { healthService } from "./health-service.js";
import { ioService } from "./io-service.js";
import { networkService } from "./network-service.js";
import { OomEvents } from "./oom-events.js";
import { oomService } from "./oom-service.js";
import { portForwardService } from "./port-forward-service.js";
import { statsService } from "./stats-service.js";
import { log, openLogPort } from "./log.js";
import { ProcessExits } from "./process-exits.js";
import { findPort } from "./virtio-port.js";
import { warmUpIfTemplate } from "./warm-up.js";

const PORT_WAIT_MS = 10_000;
/** moat-init's relay connects here for each host session (AGENT_SOCKET in moat-init.c). */
const AGENT_SOCKET = "/run/moat-agent.sock";
/** moat-init reports the exits of processes it reaps on this descriptor (moat-init.c). */
const EXIT_REPORT_FD = 3;

/** Shutdown: moat-init syncs and resets the VM on SIGTERM, whatever the agent is doing. */
function powerOff(): void {
  process.kill(1, "SIGTERM");
}

/** A fatal error: the last word goes to the log, then the agent ends and moat-init resets the VM. */
function die(error: Error): never {
  log(`fatal: ${error.stack ?? error.message}`);
  process.stderr.write(`moat-agent: fatal: ${error.message}\n`); // the console too, in case the log port is the problem
  process.exit(1);
}

async function main(): Promise<void> {
  openLogPort(await findPort("log.0", PORT_WAIT_MS));
  setTraceSink((line) => log(line));
  process.on("uncaughtException", die);

  const exits = new ProcessExits();
  exits.listen(EXIT_REPORT_FD, log);
  const oomEvents = new OomEvents(log);
  const containers = new Containers(exits, oomEvents);

  const server = new TtrpcServer();
  server.register(HealthService, healthService);
  server.register(GuestService, guestService(powerOff));
  server.register(ContainerService, containerService(containers));
  server.register(IoService, ioService(containers));
  server.register(StatsService, statsService(containers));
  server.register(OomService, oomService(oomEvents));
  server.register(NetworkService, networkService());
  server.register(PortForwardService, portForwardService());

  // Before serving: a template is saved once its agent says it serves (factory/template.ts).
  await warmUpIfTemplate(containers, log);
  await rm(AGENT_SOCKET, { force: true });
  let sessions = 0;
  const listener = createServer((socket) => {
    const connection = server.serve(socket, `host-${++sessions}`);
    connection.closed.then((reason) => log(`host session ${connection.id} ended: ${reason.message}`));
  });
  await new Promise<void>((resolve, reject) => listener.once("error", reject).listen(AGENT_SOCKET, resolve));
  log(`moat-agent ${MOAT_VERSION} serving on ${AGENT_SOCKET}`);
}

// The image build runs this file once with `node --build-snapshot` (image/rootfs/build.sh):
// modules are loaded and evaluated then, and the guest's node starts from that snapshot and
// calls main(), which halves the agent's start under TCG (docs/guest-image.md).
if (startupSnapshot.isBuildingSnapshot()) startupSnapshot.setDeserializeMainFunction(() => void main().catch(die));
else main().catch(die);
