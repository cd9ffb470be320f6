export { ShareServers, type ShareServerOptions } from "./share-servers.js";
export { virtiofsdCommand, type VirtioFsCache, type VirtiofsdOptions } from "./virtiofsd.js";
