// One container in its own sandbox VM, from start to exit: the foreground `moat run`. An
// image's root file system is shared read-only into the guest (9p or virtio-fs) under a writable overlay
// in guest memory, so nothing is written to the host's image; a bundle's is shared as it is,
// like its directory bind mounts. Nothing is mounted on the host. Output is relayed with
// back-pressure: each read is a long poll the agent answers only when there is data, and the
// next read waits until the local stream has taken the last chunk.
import type { Readable, Writable } from "node:stream";
import type { Config } from "../config/index.js";
import type { Image } from "../images/index.js";
import { consoleSize, defaultSpec, guestSpec, type Bundle, type OciSpec, type WindowSize } from "../oci/index.js";
import type { AgentClient } from "./agent-client.js";
import { sandboxFilesDir, startSandboxVm, type SandboxVm, type WarmPool } from "./sandbox-vm.js";

/** The largest stdin chunk sent in one call, well under the 4 MiB frame cap. */
const STDIN_CHUNK_BYTES = 1 << 20;

export interface RunOptions {
  id: string;
  /** What to run: a built-in image (with `args`, or its default command), or an OCI bundle. */
  what: { image: Image; args: string[] } | { bundle: Bundle };
  /** Relayed to the process's stdin if given; otherwise its stdin is /dev/null. */
  stdin: Readable | undefined;
  stdout: Writable;
  stderr: Writable;
  vcpus?: number;
  memoryMiB?: number;
  /** Where a VM restored ahead of time may come from (moatd's warm pool). */
  pool?: WarmPool;
  /** Give the process a terminal in the guest, of this size if known: its output is then one stream, on stdout. */
  terminal?: { size: WindowSize | undefined };
  /** Called once the container runs, with what can be done to it (signal it for Ctrl-C, resize its terminal). */
  onStarted?: (process: RunningProcess) => void;
  /** Stops the run before the container starts (Ctrl-C then): nothing is left behind, and its reason is thrown. */
  abort?: AbortSignal;
  /** Hears what is worth one line to the user: how a bundle's host cgroup was made where systemd does not run. */
  log?: (line: string) => void;
}

export interface RunningProcess {
  signal(signal: number): void;
  resize(rows: number, columns: number): void;
}

export interface RunResult {
  exitStatus: number;
  signal: number;
  sandbox: Pick<SandboxVm, "timings" | "accelerator">;
}

export async function runContainer(config: Config, options: RunOptions): Promise<RunResult> {
  const containerId = options.id;
  const { spec, shares, files, hostCgroup, networkNamespace } = specFor(options, sandboxFilesDir(config.runtime.stateRoot, options.id));
  const sandbox = await startSandboxVm(config, options.id, {
    shares: shares.map(({ tag, hostPath, readOnly }) => ({ tag, hostPath, readOnly })),
    files,
    // A bundle's linux.cgroupsPath holds the VM on the host, as runc's run puts the container there.
    hostCgroup: hostCgroup && { target: hostCgroup, log: options.log ?? (() => undefined) },
    vcpus: options.vcpus,
    memoryMiB: options.memoryMiB,
    pool: options.pool,
    abort: options.abort,
    network: networkNamespace,
  });
  const { agent } = sandbox;
  try {
    options.abort?.throwIfAborted();
    // Created and started in one crun call: this command starts what it creates. Output waits
    // in the agent until the relays below read it.
    await agent.createContainer(containerId, spec, shares.map(({ tag, readOnly, overlay }) => ({ tag, readOnly, overlay, fs: sandbox.shareFs })), { stdin: options.stdin !== undefined, start: true });
    options.abort?.throwIfAborted(); // the container runs: the finally below stops it with its VM
    const relays = [relayOutput(agent, containerId, "stdout", options.stdout), relayOutput(agent, containerId, "stderr", options.stderr)];
    // A QEMU killed under the container fails WaitProcess and the relays alike: the relays'
    // rejections must not end this process unhandled before the finally below cleans up.
    for (const relay of relays) relay.catch(() => undefined);
    const inOrder = sequence();
    options.onStarted?.({
      signal: (signal) => void agent.signalProcess(containerId, "", signal).catch(() => undefined),
      resize: (rows, columns) => void inOrder(() => agent.resizePty(containerId, "", rows, columns)).catch(() => undefined), // the process may have exited
    });
    if (options.stdin) void relayStdin(agent, containerId, options.stdin, inOrder).catch(() => undefined); // the process may exit without reading it all
    const exit = await agent.waitProcess(containerId, "");
    await Promise.all(relays);
    return { exitStatus: exit.exitStatus, signal: exit.signal, sandbox };
  } finally {
    // No RemoveContainer first: the whole VM goes, and its shutdown syncs what the container
    // wrote to its shares; crun delete in the guest would only add ~0.4 s under TCG.
    await sandbox.shutdown();
  }
}

function specFor(options: RunOptions, filesDir: string): ReturnType<typeof guestSpec> {
  const containerId = options.id;
  if ("bundle" in options.what) {
    const { bundle } = options.what;
    return guestSpec({ containerId, spec: withTerminal(bundle.spec, options.terminal), rootfs: bundle.rootfs, overlay: false, where: `${bundle.dir}/config.json`, filesDir });
  }
  const { image, args } = options.what;
  const spec = defaultSpec({ args: args.length > 0 ? args : image.cmd, env: image.env, cwd: image.cwd, hostname: containerId.slice(0, 63) });
  return guestSpec({ containerId, spec: withTerminal(spec, options.terminal), rootfs: image.rootfs, overlay: true, where: `image ${image.name}`, filesDir });
}

/** The spec with process.terminal set, and process.consoleSize when the size is known. */
function withTerminal(spec: OciSpec, terminal: RunOptions["terminal"]): OciSpec {
  return terminal ? { ...spec, process: { ...spec.process, terminal: true, ...consoleSize(terminal.size) } } : spec;
}

async function relayOutput(agent: AgentClient, containerId: string, stream: "stdout" | "stderr", to: Writable): Promise<void> {
  for (;;) {
    const { data, eof } = await agent.readOutput(containerId, "", stream);
    if (data.length > 0 && !to.write(data)) await new Promise((resolve) => to.once("drain", resolve));
    if (eof) return;
  }
}

async function relayStdin(agent: AgentClient, containerId: string, from: Readable, inOrder: Sequence): Promise<void> {
  for await (const chunk of from) {
    const bytes = chunk as Buffer; // a byte stream: no encoding was set
    for (let offset = 0; offset < bytes.length; offset += STDIN_CHUNK_BYTES) {
      await inOrder(() => agent.writeStdin(containerId, "", bytes.subarray(offset, offset + STDIN_CHUNK_BYTES)));
    }
  }
  await inOrder(() => agent.closeStdin(containerId, ""));
}

type Sequence = (call: () => Promise<unknown>) => Promise<void>;

/** Agent calls made one after another in the order asked for: keys typed after a resize reach the process after it. */
function sequence(): Sequence {
  let last: Promise<unknown> = Promise.resolve();
  return (call) => {
    const next = last.then(call);
    last = next.catch(() => undefined); // one failed call does not stop the ones after it
    return next.then(() => undefined);
  };
}
