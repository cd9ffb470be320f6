// The pure parts of bench/pods.ts: reading a CRI container log, naming the processes a pod's
// host memory is split into, and the RuntimeClass overhead made of a per-pod figure.
import { basename } from "node:path";

/**
 * The messages of a CRI log ("<RFC 3339 time> <stdout|stderr> <P|F> <text>" per line, kubelet's
 * format), a partial line (P) joined with what follows it up to its full line (F). Lines not in
 * that format are skipped (a log being written may end in half a line).
 */
export function criLogMessages(text: string): string[] {
  const messages: string[] = [];
  let partial = "";
  for (const line of text.split("\n")) {
    const match = /^\S+ (?:stdout|stderr) ([PF]) (.*)$/.exec(line);
    if (!match) continue;
    partial += match[2];
    if (match[1] === "F") {
      messages.push(partial);
      partial = "";
    }
  }
  return messages;
}

/**
 * What a process is, for a pod's memory breakdown, from its argv: the program's base name, or
 * for an interpreter (node, sh), the script it runs ("moatd.mjs").
 */
export function processLabel(argv: string[]): string {
  const program = basename(argv[0] ?? "?");
  if (program === "node" || program === "sh") {
    const script = argv.slice(1).find((arg) => !arg.startsWith("-"));
    if (script !== undefined && /\.(m?js|sh)$/.test(script)) return basename(script);
  }
  return program.length > 0 ? program : "?";
}

/** PSS summed by label and divided by `pods`, largest first, in MiB rounded to 0.1. */
export function perPodBreakdown(samples: Array<{ label: string; pssMiB: number }>, pods: number): Array<{ label: string; processes: number; mibPerPod: number }> {
  const byLabel = new Map<string, { processes: number; mib: number }>();
  for (const { label, pssMiB } of samples) {
    const entry = byLabel.get(label) ?? { processes: 0, mib: 0 };
    entry.processes++;
    entry.mib += pssMiB;
    byLabel.set(label, entry);
  }
  return [...byLabel]
    .map(([label, { processes, mib }]) => ({ label, processes, mibPerPod: Math.round((mib / pods) * 10) / 10 }))
    .sort((a, b) => b.mibPerPod - a.mibPerPod || a.label.localeCompare(b.label));
}

/** `overhead.podFixed.memory` for a measured per-pod MiB figure: rounded up to the next 10 Mi. */
export function podFixedMemory(perPodMiB: number): string {
  if (!Number.isFinite(perPodMiB) || perPodMiB <= 0) throw new RangeError(`podFixedMemory: not a measured figure: ${perPodMiB}`);
  return `${Math.ceil(perPodMiB / 10) * 10}Mi`;
}
