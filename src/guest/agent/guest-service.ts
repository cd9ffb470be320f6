// GuestService: what the guest is (kernel, CPUs, memory), taking its own identity after a
// restore from a VM template, and powering it off.
import { readFile } from "node:fs/promises";
import { availableParallelism, uptime } from "node:os";
import type { GuestService } from "../../shared/protocol/index.js";
import { MoatError } from "../../shared/errors.js";
import { Code, type ServiceImplementation } from "../../shared/ttrpc/index.js";
import { log } from "./log.js";
import { sys } from "./sys.js";


/** A field of /proc/meminfo in bytes ("MemTotal:  503412 kB"), 0 if absent. */
function meminfoBytes(meminfo: string, field: string): bigint {
  const match = new RegExp(`^${field}:\\s+(\\d+) kB$`, "m").exec(meminfo);
  return match ? BigInt(match[1]!) * 1024n : 0n; // group 1 exists when the pattern matched
}

/** `powerOff` asks moat-init to reset the VM, which ends QEMU. */
export function guestService(powerOff: () => void): ServiceImplementation<typeof GuestService> {
  return {
    async details() {
      const meminfo = await readFile("/proc/meminfo", "utf8");
      // Not os.release(): Node caches uname at start-up, and the agent starts from a V8
      // snapshot taken on the build host, so that would name the host's kernel.
      const [kernelRelease, kernelVersion] = await Promise.all(["osrelease", "version"].map(async (name) => (await readFile(`/proc/sys/kernel/${name}`, "utf8")).trim()));
      return {
        kernelRelease,
        kernelVersion,
        onlineCpus: availableParallelism(),
        memoryTotalBytes: meminfoBytes(meminfo, "MemTotal"),
        memoryAvailableBytes: meminfoBytes(meminfo, "MemAvailable"),
        uptimeSeconds: uptime(),
      };
    },
    async takeIdentity(request) {
      const nanos = request.timeUnixNanos;
      // The RNG first: nothing after it may draw on the template's random state.
      const steps: Array<[string, () => void]> = [
        ["reseed the RNG", () => sys().reseedRandom(request.entropy)],
        ["set the clock", () => sys().setClock(Number(nanos / 1_000_000_000n), Number(nanos % 1_000_000_000n))],
        ["set the hostname", () => sys().setHostname(request.hostname)],
      ];
      for (const [what, step] of steps) {
        try {
          step();
        } catch (error) {
          throw new MoatError("MOAT_GUEST_IDENTITY", `guest: cannot ${what}: ${error instanceof Error ? error.message : String(error)}`, { status: Code.INTERNAL });
        }
      }
      log(`restored from a template: RNG reseeded, clock set, hostname ${request.hostname}`);
      return {};
    },
    async shutdown(_request, context) {
      context.afterResponse(powerOff);
      return {};
    },
  };
}
