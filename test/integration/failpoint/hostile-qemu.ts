// A "QEMU" whose guest is hostile, for test/integration/issue-10-hostile-agent.test.ts. It is
// placed as [hypervisor.qemu] path in a task's configuration, so moatd, the shim and the relay
// stay real and start it as they start QEMU: it reads the command line moatd builds (cmdline.ts),
// (moat-jail writes the pid file, as for QEMU), speaks enough QMP for moatd (greeting, qmp_capabilities, quit,
// query-status, query-cpus-fast), and serves a ttrpc agent on the agent chardev's socket that
// breaks the agent API the way the sandbox's id says (the word before its first "-"):
//
//   negexit    WaitProcess (and StateContainer, once exited) answers exit status -1
//   hugeexit   ... 2147483647
//   emptyread  ReadOutput answers at once, with no data and eof=false, until the process is killed
//   oomflood   NextOomEvent answers at once, every time, with the next event for this container
//   oversize   ReadOutput answers 2 MiB (1 MiB was asked for), then the process exits 0
//   escapes    StartContainer fails with a 3 MiB message full of terminal escape sequences
//   mute       the agent never answers (HealthService.Check waits for ever); the console is
//              full of escape sequences, which the agent-timeout error quotes
//
// Every other answer is a well-behaved agent's, so each case tests one misbehaviour. The
// console file gets a line with escape sequences at start in every mode.
import { appendFileSync, rmSync } from "node:fs";
import { createServer, type Socket } from "node:net";
import { MoatError } from "../../../src/shared/errors.js";
import {
  AGENT_PROTOCOL_VERSION,
  ContainerService,
  GuestService,
  HealthService,
  IoService,
  OomService,
  StatsService,
} from "../../../src/shared/protocol/index.js";
import { Code, TtrpcServer } from "../../../src/shared/ttrpc/index.js";

const args = process.argv.slice(2);
const option = (name: string) => args[args.indexOf(name) + 1] ?? "";
/** `key=value` from a comma-separated QEMU option string. */
const field = (spec: string, key: string) => spec.split(",").find((part) => part.startsWith(`${key}=`))?.slice(key.length + 1) ?? "";
const chardev = (id: string) => args.find((arg, index) => args[index - 1] === "-chardev" && arg.includes(`,id=${id},`)) ?? "";

const name = /^moat-([^,]+)/.exec(option("-name"))?.[1] ?? "";
const mode = name.split("-")[0] ?? "";
const qmpPath = option("-qmp").replace(/^unix:/, "").split(",")[0] ?? "";
const agentPath = field(chardev("agent"), "path");
const consolePath = field(chardev("console"), "path");

const ESCAPES = "\u001b[2J\u001b[H\u001b]0;owned by the guest\u0007\u001b[31mred\u001b[0m\r\n";

appendFileSync(consolePath, `[    0.000000] hostile guest booting ${ESCAPES}`);
if (mode === "mute") for (let line = 0; line < 200; line++) appendFileSync(consolePath, `console line ${line} ${ESCAPES}`);

// QMP: newline-delimited JSON; the greeting first, then one answer per command.
rmSync(qmpPath, { force: true });
createServer((socket) => {
  socket.write(JSON.stringify({ QMP: { version: { qemu: { major: 7, minor: 2, micro: 0 }, package: "hostile" }, capabilities: [] } }) + "\n");
  let buffered = "";
  socket.on("data", (chunk) => {
    buffered += chunk.toString();
    for (let end = buffered.indexOf("\n"); end >= 0; end = buffered.indexOf("\n")) {
      const { execute, id } = JSON.parse(buffered.slice(0, end)) as { execute: string; id?: unknown };
      buffered = buffered.slice(end + 1);
      const answers: Record<string, unknown> = { qmp_capabilities: {}, "query-status": { status: "running", running: true }, "query-cpus-fast": [], quit: {}, stop: {}, cont: {} };
      const answer = execute in answers ? { return: answers[execute], id } : { error: { class: "CommandNotFound", desc: `${execute}: not here` }, id };
      socket.write(JSON.stringify(answer) + "\n");
      if (execute === "quit") setTimeout(() => process.exit(0), 10);
    }
  });
  socket.on("error", () => undefined);
}).listen(qmpPath);

// The container's one process, as the guest would report it.
let exitStatus: number | undefined;
const exitWaiters: Array<() => void> = [];
const exit = (status: number) => {
  exitStatus ??= status;
  for (const wake of exitWaiters.splice(0)) wake();
};
const exited = () => new Promise<void>((resolve) => (exitStatus === undefined ? exitWaiters.push(resolve) : resolve()));
const reportedStatus = () => (mode === "negexit" ? -1 : mode === "hugeexit" ? 2147483647 : (exitStatus ?? 0));
let started = false;

const server = new TtrpcServer();
server.register(HealthService, {
  async check() {
    if (mode === "mute") await new Promise(() => undefined); // never answers
    return { uptimeSeconds: 1 };
  },
  async version() {
    return { agentVersion: "hostile", protocolVersion: AGENT_PROTOCOL_VERSION, runtimeVersion: "v0" };
  },
});
server.register(GuestService, {
  async details() {
    return { kernelRelease: "6.1-hostile", kernelVersion: "#1", onlineCpus: 1, memoryTotalBytes: 1n << 29n, memoryAvailableBytes: 1n << 28n, uptimeSeconds: 1 };
  },
  async shutdown() {
    setTimeout(() => process.exit(0), 20); // after the answer is out, as the real guest resets
    return {};
  },
  async takeIdentity() {
    return {};
  },
});
server.register(ContainerService, {
  async createContainer() {
    // badsteps: where its time went, made up: too many steps, control characters, time running backwards.
    if (mode === "badsteps") return { pid: 100, steps: Array.from({ length: 5000 }, (_, index) => ({ name: `${ESCAPES}${index}`, startNs: 10n ** 18n, endNs: BigInt(index) })) };
    return { pid: 100 };
  },
  async startContainer() {
    if (mode === "escapes") {
      throw new MoatError("MOAT_CRUN_FAILED", `crun: ${ESCAPES}level=error msg="forged line"\n${"\u001b[5m".repeat(3 << 18)}`, { status: Code.FAILED_PRECONDITION });
    }
    started = true;
    if (mode === "negexit" || mode === "hugeexit") exit(0);
    if (mode === "badsteps") {
      exit(0);
      return { steps: [{ name: "x".repeat(1 << 20), startNs: 0n, endNs: 1n }] };
    }
    return {};
  },
  async execProcess() {
    throw new MoatError("MOAT_TEST", "no execs here", { status: Code.UNIMPLEMENTED });
  },
  async signalProcess(request) {
    exit(128 + request.signal);
    return {};
  },
  async waitProcess() {
    await exited();
    return { exitStatus: reportedStatus(), signal: 0, oomSequence: 0n, steps: mode === "badsteps" ? [{ name: "process", startNs: 0n, endNs: 2n ** 64n - 1n }] : [] };
  },
  async pauseContainer() {
    return {};
  },
  async resumeContainer() {
    return {};
  },
  async stateContainer() {
    return { status: exitStatus === undefined ? (started ? "running" : "created") : "stopped", pid: 100, exitStatus: exitStatus === undefined ? 0 : reportedStatus() };
  },
  async listProcesses() {
    return { processes: [{ pid: 100, command: "sh" }] };
  },
  async updateContainer() {
    return {};
  },
  async removeContainer() {
    return {};
  },
});
let oversizeSent = false;
server.register(IoService, {
  async writeStdin(request) {
    return { written: request.data.length };
  },
  async closeStdin() {
    return {};
  },
  async readOutput(_request, context) {
    if (mode === "emptyread" && exitStatus === undefined) return { data: new Uint8Array(0), eof: false };
    if (mode === "oversize" && !oversizeSent) {
      oversizeSent = true;
      setTimeout(() => exit(0), 100);
      return { data: new Uint8Array(2 << 20).fill(0x41), eof: false };
    }
    // A well-behaved long poll: nothing until the process has exited, then the end.
    await Promise.race([exited(), new Promise((resolve) => context.signal.addEventListener("abort", resolve))]);
    return { data: new Uint8Array(0), eof: true };
  },
  async resizePty() {
    return {};
  },
});
server.register(OomService, {
  async nextOomEvent(request, context) {
    if (mode === "oomflood") return { containerId: name, sequence: request.afterSequence + 1n };
    await new Promise((resolve) => context.signal.addEventListener("abort", resolve));
    throw new MoatError("MOAT_AGENT_REQUEST", "host session ended", { status: Code.CANCELLED });
  },
});
server.register(StatsService, {
  async cgroupFiles() {
    return { files: {} };
  },
});

rmSync(agentPath, { force: true });
let sessions = 0;
createServer((socket: Socket) => {
  socket.on("error", () => undefined);
  server.serve(socket, `host-session-${++sessions}`);
}).listen(agentPath);
