export { ShareServers, type ShareServerOptions } from "./share-servers.js";
export { virtiofsdCommand, type VirtioFsCache, type VirtiofsdOptions } from "./virtiofsd.js";
export { bindFiles, bindShares, mountsUnder, removeMountedDir, removeStateDir } from "./share-dir.js";
