export { daemonPool, DaemonClient, removeContainer, type DaemonStart } from "./client.js";
export { Daemon, type AdoptedStdio, type Adopter, type ContainerOwner, type ContainerState, type ContainerStatus, type OomListener } from "./daemon.js";
export type { ProcessStdio, StdioFactory, StdioInput } from "./process-stdio.js";
export { serveDaemon, type FrontEnd, type ServeOptions } from "./serve.js";
export { daemonSocketPath } from "./socket-path.js";
export { containUnhandledRejections, currentSandbox, inSandbox } from "./sandbox-scope.js";
