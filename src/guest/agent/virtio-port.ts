// The agent's end of a virtio-serial port (/dev/vportNpM), as a duplex stream per host session.
//
// Node has no non-blocking handle for a character device, so one loop reads the port with
// blocking reads on libuv's thread pool. A read that returns 0 bytes means the host end is
// not connected (virtio_console returns EOF then instead of blocking): the current session
// ends and the loop waits for the host to connect again. Bytes that arrive after that start
// a new session, so a host that reconnects (a restarted daemon) gets a fresh ttrpc stream.

import { open, readdir, readFile } from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import { Duplex } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";

const READ_BYTES = 64 * 1024;
const RECONNECT_POLL_MS = 20;

/** Finds the device of the port QEMU named `name` (virtserialport name=...), waiting for it to appear. */
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

class PortSession extends Duplex {
  constructor(private readonly file: FileHandle) {
    super();
  }

  override _read(): void {
    // Data is pushed by the port's read loop.
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    writeAll(this.file, chunk).then(() => callback(), callback);
  }
}

async function writeAll(file: FileHandle, chunk: Buffer): Promise<void> {
  let offset = 0;
  while (offset < chunk.length) {
    const { bytesWritten } = await file.write(chunk, offset, chunk.length - offset, null);
    offset += bytesWritten;
  }
}

/** Reads `path` for ever, handing each host session to `onSession` as a duplex stream. */
export async function servePort(path: string, onSession: (stream: Duplex) => void): Promise<never> {
  const file = await open(path, "r+");
  const buffer = Buffer.allocUnsafe(READ_BYTES);
  let session: PortSession | undefined;
  for (;;) {
    const { bytesRead } = await file.read(buffer, 0, READ_BYTES, null);
    if (bytesRead === 0) {
      session?.push(null);
      session = undefined;
      await sleep(RECONNECT_POLL_MS);
      continue;
    }
    if (!session || session.destroyed) {
      session = new PortSession(file);
      onSession(session);
    }
    session.push(Buffer.from(buffer.subarray(0, bytesRead)));
  }
}
