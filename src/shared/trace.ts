// Tracers switched on by MOAT_TRACE, a comma-separated list of folder names
// (MOAT_TRACE=qmp,ttrpc,agent) or "all". A trace line carries the tracer name and the
// id of the object it is about, and goes to stderr, or wherever setTraceSink points it.

export type TraceSink = (line: string) => void;

let sink: TraceSink = (line) => process.stderr.write(line + "\n");
const enabled = new Set(
  (process.env.MOAT_TRACE ?? "")
    .split(",")
    .map((name) => name.trim())
    .filter((name) => name.length > 0),
);

/** Sends trace lines elsewhere (the guest agent sends them to its log port). */
export function setTraceSink(next: TraceSink): void {
  sink = next;
}

export interface Tracer {
  readonly enabled: boolean;
  (id: string, message: string): void;
}

export function tracer(name: string): Tracer {
  const on = enabled.has(name) || enabled.has("all");
  const trace = ((id: string, message: string) => {
    if (on) sink(`${new Date().toISOString()} ${name} ${id}: ${message}`);
  }) as Tracer; // the function object gains `enabled` on the next line
  Object.defineProperty(trace, "enabled", { value: on });
  return trace;
}
