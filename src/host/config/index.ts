export type { Config, QemuConfig, AgentConfig, RuntimeConfig, FactoryConfig } from "./config.js";
export { DEFAULT_SOCKET_ROOT, defaultConfig, loadConfig, parseConfig, parseVmmUser, SYSTEM_CONFIG_PATH } from "./load.js";
export { vmmLaunch, type VmmLaunch } from "./vmm-launch.js";
export { packageRoot } from "./package-root.js";
