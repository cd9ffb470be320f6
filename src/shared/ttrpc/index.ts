export { TtrpcClient, TtrpcStatusError, type CallOptions } from "./client.js";
export { TtrpcServer, type CallContext, type ServiceImplementation } from "./server.js";
export { Connection } from "./connection.js";
export { FrameDecoder, FrameError, FrameType, encodeFrame, MAX_DATA_BYTES, HEADER_BYTES, type Frame } from "./frame.js";
export { Code, codeName } from "./status.js";
export { connectUnix } from "./transport/unix.js";
export { connectHybridVsock } from "./transport/hybrid-vsock.js";
