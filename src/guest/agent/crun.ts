// Running crun, the OCI runtime inside the guest. Each call is one crun command; a failure
// becomes an error that quotes what crun said.
import { execFile } from "node:child_process";
import { MoatError } from "../../shared/errors.js";
import { Code } from "../../shared/ttrpc/index.js";

const CRUN = "/usr/bin/crun";
/** crun keeps its container state on the guest's /run tmpfs. */
const CRUN_ROOT = "/run/crun";
const CRUN_TIMEOUT_MS = 30_000;

/** Runs `crun --root /run/crun ARGS…`; rejects with crun's own words. */
export function crun(containerId: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(CRUN, ["--root", CRUN_ROOT, ...args], { timeout: CRUN_TIMEOUT_MS }, (error, stdout, stderr) => {
      if (!error) return resolve(stdout);
      const said = stderr.trim().split("\n").slice(-3).join("; ") || error.message;
      reject(new MoatError("MOAT_CRUN_FAILED", `container ${containerId}: crun ${args[0]} failed: ${said}`, { status: Code.FAILED_PRECONDITION }));
    });
  });
}

export const crunRoot = CRUN_ROOT;
export const crunBinary = CRUN;
