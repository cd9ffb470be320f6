// Finding a virtio-serial port by the name QEMU gave it (virtserialport name=...). The agent
// writes its log to the port "log.0"; the port "agent.0" is moat-init's relay's
// (src/guest/init/vport-relay.c), which connects to the agent's unix socket per host session.
import { readdir, readFile } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";

/** Finds the device of the port named `name`, waiting for it to appear. */
export async function findPort(name: string, timeoutMs: number): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let entries: string[] = [];
    try {
      entries = await readdir("/sys/class/virtio-ports");
    } catch {
      // The class directory appears with the first port.
    }
    for (const entry of entries) {
      const portName = await readFile(`/sys/class/virtio-ports/${entry}/name`, "utf8").catch(() => "");
      if (portName.trim() === name) return `/dev/${entry}`;
    }
    if (Date.now() > deadline) throw new Error(`virtio-serial port ${name}: not found within ${timeoutMs} ms`);
    await sleep(10);
  }
}
