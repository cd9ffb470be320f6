// One container in its own sandbox VM, from start to exit: the foreground `moat run`. The
// image's root file system is shared read-only into the guest (9p) and the agent puts a
// writable overlay in guest memory on top, so nothing is written to the host's image and
// nothing is mounted on the host. Output is relayed with back-pressure: each read is a long
// poll the agent answers only when there is data, and the next read waits until the local
// stream has taken the last chunk.
import type { Readable, Writable } from "node:stream";
import type { Config } from "../config/index.js";
import type { Image } from "../images/index.js";
import { defaultSpec } from "../oci/index.js";
import type { AgentClient } from "./agent-client.js";
import { startSandboxVm, type SandboxVm } from "./sandbox-vm.js";

const ROOTFS_TAG = "rootfs";
/** The largest stdin chunk sent in one call, well under the 4 MiB frame cap. */
const STDIN_CHUNK_BYTES = 1 << 20;

export interface RunOptions {
  id: string;
  image: Image;
  /** The command; the image's default when empty. */
  args: string[];
  /** Relayed to the process's stdin if given; otherwise its stdin is /dev/null. */
  stdin: Readable | undefined;
  stdout: Writable;
  stderr: Writable;
  vcpus?: number;
  memoryMiB?: number;
  /** Called once the container runs, with a function that signals it (for Ctrl-C). */
  onStarted?: (signal: (signal: number) => void) => void;
}

export interface RunResult {
  exitStatus: number;
  signal: number;
  sandbox: Pick<SandboxVm, "timings" | "accelerator">;
}

export async function runContainer(config: Config, options: RunOptions): Promise<RunResult> {
  const sandbox = await startSandboxVm(config, options.id, {
    shares: [{ tag: ROOTFS_TAG, hostPath: options.image.rootfs, readOnly: true }],
    vcpus: options.vcpus,
    memoryMiB: options.memoryMiB,
  });
  const { agent } = sandbox;
  const containerId = options.id;
  try {
    const spec = defaultSpec({
      args: options.args.length > 0 ? options.args : options.image.cmd,
      env: options.image.env,
      cwd: options.image.cwd,
      hostname: containerId.slice(0, 63),
    });
    await agent.createContainer(containerId, spec, ROOTFS_TAG, options.stdin !== undefined);
    try {
      const relays = [relayOutput(agent, containerId, "stdout", options.stdout), relayOutput(agent, containerId, "stderr", options.stderr)];
      await agent.startContainer(containerId);
      options.onStarted?.((signal) => void agent.signalProcess(containerId, signal).catch(() => undefined));
      if (options.stdin) void relayStdin(agent, containerId, options.stdin).catch(() => undefined); // the process may exit without reading it all
      const exit = await agent.waitProcess(containerId);
      await Promise.all(relays);
      return { exitStatus: exit.exitStatus, signal: exit.signal, sandbox };
    } finally {
      await agent.removeContainer(containerId).catch(() => undefined);
    }
  } finally {
    await sandbox.shutdown();
  }
}

async function relayOutput(agent: AgentClient, containerId: string, stream: "stdout" | "stderr", to: Writable): Promise<void> {
  for (;;) {
    const { data, eof } = await agent.readOutput(containerId, stream);
    if (data.length > 0 && !to.write(data)) await new Promise((resolve) => to.once("drain", resolve));
    if (eof) return;
  }
}

async function relayStdin(agent: AgentClient, containerId: string, from: Readable): Promise<void> {
  for await (const chunk of from) {
    const bytes = chunk as Buffer; // a byte stream: no encoding was set
    for (let offset = 0; offset < bytes.length; offset += STDIN_CHUNK_BYTES) {
      await agent.writeStdin(containerId, bytes.subarray(offset, offset + STDIN_CHUNK_BYTES));
    }
  }
  await agent.closeStdin(containerId);
}
