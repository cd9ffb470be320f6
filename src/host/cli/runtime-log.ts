// runc's --log: errors appended to a file, as one JSON object a line with --log-format json
// ({"level":"error","msg":…,"time":…}, logrus's shape, which conmon and podman read and show)
// or as text otherwise.
import { appendFileSync } from "node:fs";

export function writeRuntimeLog(path: string, format: string | undefined, message: string): void {
  const time = new Date().toISOString();
  const line = format === "json" ? JSON.stringify({ level: "error", msg: message, time }) : `time="${time}" level=error msg=${JSON.stringify(message)}`;
  try {
    appendFileSync(path, line + "\n");
  } catch {
    // The caller's log is best effort; the error is on stderr already.
  }
}
