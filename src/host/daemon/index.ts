export { DaemonClient, type DaemonStart } from "./client.js";
export { daemonSocketPath } from "./socket-path.js";
