import { open } from "node:fs/promises";

/** The last `maxLines` lines of a log file (at most 16 KiB read), or "" if it cannot be read. */
export async function tailOf(path: string, maxLines: number): Promise<string> {
  try {
    const file = await open(path, "r");
    try {
      const { size } = await file.stat();
      const length = Math.min(size, 16 * 1024);
      const buffer = Buffer.alloc(length);
      await file.read(buffer, 0, length, size - length);
      return buffer.toString("utf8").trimEnd().split("\n").slice(-maxLines).join("\n");
    } finally {
      await file.close();
    }
  } catch {
    return "";
  }
}
