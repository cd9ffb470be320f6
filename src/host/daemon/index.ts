export { DaemonClient, removeContainer, type DaemonStart, type RunCall } from "./client.js";
export { Daemon, type AdoptedStdio, type Adopter, type BootReport, type ContainerOwner, type ContainerState, type ContainerStatus, type OomListener } from "./daemon.js";
export type { ProcessStdio, StdioFactory, StdioInput } from "./process-stdio.js";
export { serveDaemon, type FrontEnd, type ServeOptions } from "./serve.js";
export { daemonSocketPath } from "./socket-path.js";
export { containUnhandledRejections, currentSandbox, inSandbox } from "./sandbox-scope.js";
export { StandInConnection, type StandInOutput } from "./stand-in-connection.js";
export { standInNeeds, type StandInNeeds } from "./stand-in-needs.js";
