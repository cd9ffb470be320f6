// The agent's log: lines go to the virtio-serial port "log.0", which QEMU writes into the
// VM's log file on the host. Writes are synchronous: the port never blocks for long (QEMU's
// file backend always reads), the volume is small, and a fatal error's last line must be out
// before the agent is killed. Without the port, lines go to the console, which QEMU captures too.
import { openSync, writeSync } from "node:fs";

let portFd: number | undefined;

export function openLogPort(path: string): void {
  portFd = openSync(path, "r+");
}

export function log(message: string): void {
  const line = `${new Date().toISOString()} moat-agent: ${message}\n`;
  try {
    if (portFd !== undefined) {
      writeSync(portFd, line);
      return;
    }
  } catch {
    portFd = undefined;
  }
  process.stderr.write(line);
}
