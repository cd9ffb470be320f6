// Where a container process's stdio goes, as the daemon sees it: the runc-style stand-in
// (stdio-relay.ts) or, for containerd, the FIFOs and log files a task was created with
// (src/host/shim). The daemon relays the process's output and then its exit status to it,
// and it feeds the process's input back through the StdioInput it was made with.

export interface StdioInput {
  /** The stand-in's host pid (the stand-in says it once connected). */
  hello(pid: number): void;
  stdin(data: Buffer): Promise<void>;
  stdinEnd(): Promise<void>;
  signal(number: number): void;
  /** The caller's terminal changed size (a process with a terminal). */
  resize(rows: number, columns: number): Promise<void>;
}

export interface ProcessStdio {
  /** Where the caller reaches it: the stand-in's socket, or the stdout FIFO. */
  readonly path: string;
  /**
   * The process exists in the guest now: input may flow. (The stand-in needs no telling: it
   * connects only after the caller got the socket, once the process exists.)
   */
  processReady?(): void;
  /** Resolves once the sink has taken the bytes (back-pressure for the relay). */
  writeOutput(stream: "stdout" | "stderr", data: Buffer): Promise<void>;
  /** The process has exited and all its output was written: the last thing it is told. */
  sendExit(status: number): Promise<void>;
  close(): Promise<void>;
}

/** Makes the stdio of one process, given where the process's input goes. */
export type StdioFactory = (input: StdioInput, where: string) => Promise<ProcessStdio>;
