// Signal names as runc's `kill` takes them: "TERM", "SIGTERM" or "15".
import { constants } from "node:os";
import { MoatError } from "../../shared/errors.js";
import { Code } from "../../shared/ttrpc/index.js";

export function parseSignal(text: string): number {
  if (/^\d+$/.test(text)) {
    const number = Number(text);
    if (number >= 1 && number <= 64) return number;
  }
  const name = (text.toUpperCase().startsWith("SIG") ? text.toUpperCase() : `SIG${text.toUpperCase()}`) as keyof typeof constants.signals;
  const number = constants.signals[name];
  if (number === undefined) throw new MoatError("MOAT_CLI_SIGNAL", `unknown signal "${text}"`, { status: Code.INVALID_ARGUMENT });
  return number;
}
