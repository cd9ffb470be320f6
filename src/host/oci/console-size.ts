// A terminal's window size, and how the OCI runtime spec carries it (process.consoleSize):
// the runtime sets it on the process's terminal before the process starts.

export interface WindowSize {
  rows: number;
  columns: number;
}

/** process.consoleSize for a size, to spread into a process object; nothing if the size is unknown. */
export function consoleSize(size: WindowSize | undefined): { consoleSize?: { height: number; width: number } } {
  return size ? { consoleSize: { height: size.rows, width: size.columns } } : {};
}
