// StatsService: a container's cgroup v2 files, read where its init process is (crun puts it
// in the container's cgroup). The agent only reads; the host parses, so a change in what the
// host reports never needs a new guest image.
import { open } from "node:fs/promises";
import { MoatError } from "../../shared/errors.js";
import type { StatsService } from "../../shared/protocol/index.js";
import { Code, type ServiceImplementation } from "../../shared/ttrpc/index.js";
import { cgroupDirOf } from "./cgroup-dir.js";
import type { Containers } from "./containers.js";

const MAX_NAMES = 16;
const MAX_FILE_BYTES = 64 * 1024;
/** A cgroup interface file's name: "cpu.stat", "memory.swap.max". */
const FILE_NAME = /^[a-z]+(\.[a-z_]+)+$/;

export function statsService(containers: Containers): ServiceImplementation<typeof StatsService> {
  return {
    async cgroupFiles(request) {
      const where = `container ${request.containerId}`;
      if (request.names.length > MAX_NAMES || !request.names.every((name) => FILE_NAME.test(name))) {
        throw new MoatError("MOAT_AGENT_REQUEST", `${where}: cgroup file names must be at most ${MAX_NAMES} names like cpu.stat`, { status: Code.INVALID_ARGUMENT });
      }
      const { status, pid } = containers.status(request.containerId);
      const dir = status === "stopped" ? undefined : await cgroupDirOf(pid);
      if (dir === undefined) throw new MoatError("MOAT_CONTAINER_STATE", `${where}: has no cgroup (${status})`, { status: Code.FAILED_PRECONDITION });
      const files: Record<string, string> = {};
      for (const name of request.names) {
        const text = await readBounded(`${dir}/${name}`);
        if (text !== undefined) files[name] = text;
      }
      return { files };
    },
  };
}

async function readBounded(path: string): Promise<string | undefined> {
  const handle = await open(path, "r").catch(() => undefined); // a controller not enabled there has no file
  if (!handle) return undefined;
  try {
    const buffer = Buffer.alloc(MAX_FILE_BYTES);
    const { bytesRead } = await handle.read(buffer, 0, MAX_FILE_BYTES, 0);
    return buffer.subarray(0, bytesRead).toString("utf8");
  } finally {
    await handle.close();
  }
}
