// Printing a benchmark's table and writing its JSON under bench/results/.
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus, release } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Summary } from "./stats.js";

export interface Row {
  name: string;
  summary: Summary;
}

const resultsDir = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "bench", "results");

/**
 * Prints rows with moat's median (the `reference` row) divided by each row's, and writes
 * everything to bench/results/NAME.json. `unit` names what the samples measure ("ms", "MiB").
 */
export function report(benchName: string, title: string, rows: Row[], reference: string, context: Record<string, unknown>, unit = "ms"): void {
  writeResult(benchName, { context, ...printTable(title, rows, reference, unit) });
}

/**
 * Prints one table of rows with the `reference` row's median divided by each row's; returns
 * it as report() writes it (a benchmark with several tables writes them together).
 */
export function printTable(title: string, rows: Row[], reference: string, unit = "ms"): { unit: string; reference: string; results: Record<string, Summary & { referenceOverThis: number }> } {
  const referenceMedian = rows.find((row) => row.name === reference)?.summary.medianMs ?? Number.NaN;
  const width = Math.max(...rows.map((row) => row.name.length));
  process.stdout.write(`\n${title}\n`);
  process.stdout.write(`${"".padEnd(width)}  ${`median ${unit}`.padStart(9)}   ${`min..max ${unit}`.padEnd(15)}  ${`p95 ${unit}`.padStart(9)}   moat ÷ this\n`);
  for (const { name, summary } of rows) {
    const ratio = referenceMedian / summary.medianMs;
    process.stdout.write(
      `${name.padEnd(width)}  ${summary.medianMs.toFixed(1).padStart(9)}   ${`${summary.minMs.toFixed(0)}..${summary.maxMs.toFixed(0)}`.padEnd(15)}  ${summary.p95Ms.toFixed(1).padStart(9)}   ${ratio.toFixed(2)}x\n`,
    );
  }
  return {
    unit,
    reference,
    results: Object.fromEntries(rows.map(({ name, summary }) => [name, { ...summary, referenceOverThis: Math.round((referenceMedian / summary.medianMs) * 100) / 100 }])),
  };
}

/** Writes bench/results/NAME.json: `body` with the benchmark's name, the date and the host. */
export function writeResult(benchName: string, body: Record<string, unknown>): void {
  const result = {
    bench: benchName,
    date: new Date().toISOString(),
    host: { cpus: cpus().length, cpuModel: cpus()[0]?.model, kernel: release(), node: process.version },
    ...body,
  };
  mkdirSync(resultsDir, { recursive: true });
  const path = join(resultsDir, `${benchName}.json`);
  writeFileSync(path, JSON.stringify(result, null, 2) + "\n");
  process.stdout.write(`\nwritten: ${path}\n`);
}
