// IoService: a container process's stdin, stdout and stderr, relayed through the agent, and
// its terminal's window size.
import { MoatError } from "../../shared/errors.js";
import { OutputStream, type IoService } from "../../shared/protocol/index.js";
import { Code, type ServiceImplementation } from "../../shared/ttrpc/index.js";
import type { Containers } from "./containers.js";

/** Each read answers with at most this much, well under the 4 MiB frame cap. */
const MAX_READ_BYTES = 1 << 20;

export function ioService(containers: Containers): ServiceImplementation<typeof IoService> {
  return {
    async writeStdin(request) {
      const stdin = containers.stdin(request.containerId, request.execId);
      await new Promise<void>((resolve, reject) => stdin.write(request.data, (error) => (error ? reject(error) : resolve())));
      return { written: request.data.length };
    },
    async closeStdin(request) {
      containers.stdin(request.containerId, request.execId).end();
      return {};
    },
    async readOutput(request, context) {
      if (request.stream !== OutputStream.STDOUT && request.stream !== OutputStream.STDERR) {
        throw new MoatError("MOAT_IO_STREAM", `container ${request.containerId}: output stream ${request.stream} does not exist`, { status: Code.INVALID_ARGUMENT });
      }
      const buffer = containers.output(request.containerId, request.execId, request.stream === OutputStream.STDOUT ? "stdout" : "stderr");
      const maxBytes = Math.min(request.maxBytes || MAX_READ_BYTES, MAX_READ_BYTES);
      return buffer.read(maxBytes, context.signal);
    },
    async resizePty(request) {
      containers.resize(request.containerId, request.execId, request.rows, request.columns);
      return {};
    },
  };
}
