// Tracers switched on by MOAT_TRACE, a comma-separated list of folder names
// (MOAT_TRACE=qmp,ttrpc,agent) or "all". A trace line carries the tracer name and the
// id of the object it is about, and goes to stderr, or wherever setTraceSink points it.
//
// MOAT_TRACE is read at the first trace call, not when this module loads: the guest agent
// starts from a V8 snapshot taken at image build time, when the module already ran.

export type TraceSink = (line: string) => void;

let sink: TraceSink = (line) => process.stderr.write(line + "\n");
let enabled: Set<string> | undefined;

function isEnabled(name: string): boolean {
  enabled ??= new Set(
    (process.env.MOAT_TRACE ?? "")
      .split(",")
      .map((entry) => entry.trim())
      .filter((entry) => entry.length > 0),
  );
  return enabled.has(name) || enabled.has("all");
}

/** Sends trace lines elsewhere (the guest agent sends them to its log port). */
export function setTraceSink(next: TraceSink): void {
  sink = next;
}

export interface Tracer {
  readonly enabled: boolean;
  (id: string, message: string): void;
}

export function tracer(name: string): Tracer {
  const trace = ((id: string, message: string) => {
    if (isEnabled(name)) sink(`${new Date().toISOString()} ${name} ${id}: ${message}`);
  }) as Tracer; // the function object gains `enabled` on the next line
  Object.defineProperty(trace, "enabled", { get: () => isEnabled(name) });
  return trace;
}
