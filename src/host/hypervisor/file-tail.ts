import { open } from "node:fs/promises";
import { printableTail } from "../../shared/printable.js";

/** How much of a tail is shown: these logs are written by guests (the console) or echo them (QEMU, virtiofsd). */
const MAX_TAIL_CHARS = 1024;

/**
 * The last `maxLines` lines of a log file (at most 16 KiB read), printable and on one line
 * (" | " between lines, at most MAX_TAIL_CHARS characters), or "" if it cannot be read.
 */
export async function tailOf(path: string, maxLines: number): Promise<string> {
  try {
    const file = await open(path, "r");
    try {
      const { size } = await file.stat();
      const length = Math.min(size, 16 * 1024);
      const buffer = Buffer.alloc(length);
      await file.read(buffer, 0, length, size - length);
      return printableTail(buffer.toString("utf8"), maxLines, MAX_TAIL_CHARS);
    } finally {
      await file.close();
    }
  } catch {
    return "";
  }
}
