// The terminal of the person running `moat run -t` or `moat exec -t`, if there is one: its
// window size, for the process's terminal in the guest (OCI process.consoleSize), its
// changes, and its mode while the container runs.
import { execFileSync } from "node:child_process";
import type { WriteStream } from "node:tty";
import type { WindowSize } from "../oci/index.js";

/** The first of stdout and stderr that is a terminal: it is where the output shows. */
function outputTerminal(): WriteStream | undefined {
  return [process.stdout, process.stderr].find((stream) => stream.isTTY);
}

export function localWindowSize(): WindowSize | undefined {
  const terminal = outputTerminal();
  return terminal ? { rows: terminal.rows, columns: terminal.columns } : undefined;
}

/** Calls `resized` with the new size each time the local terminal's window changes (SIGWINCH). */
export function onLocalResize(resized: (size: WindowSize) => void): void {
  const terminal = outputTerminal();
  terminal?.on("resize", () => resized({ rows: terminal.rows, columns: terminal.columns }));
}

/**
 * Sets the local terminal's mode for a container's terminal and returns what restores it. The
 * guest's terminal already echoes, edits lines, turns keys into signals and ends lines with
 * CRLF, so the local one must do none of it: raw (`stty raw -echo`) when its input goes to the
 * container, otherwise output untouched (`-opost`), so Ctrl-C still stops `moat run` here.
 * Not Node's setRawMode: libuv's raw mode keeps output processing on (ONLCR), and CRLF from
 * the guest would arrive as CR CR LF.
 */
export function localTerminalMode(interactive: boolean): () => void {
  if (interactive && process.stdin.isTTY) return sttyMode(0, ["raw", "-echo"]);
  if (process.stdout.isTTY) return sttyMode(1, ["-opost"]);
  return () => undefined;
}

/** Applies stty `settings` to the terminal on `fd` until the returned function restores it. */
function sttyMode(fd: number, settings: string[]): () => void {
  const saved = execFileSync("stty", ["-g"], { stdio: [fd, "pipe", "inherit"], encoding: "utf8" }).trim();
  execFileSync("stty", settings, { stdio: [fd, "ignore", "inherit"] });
  return () => execFileSync("stty", [saved], { stdio: [fd, "ignore", "inherit"] });
}
