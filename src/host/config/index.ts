export type { Config, QemuConfig, AgentConfig, RuntimeConfig, FactoryConfig } from "./config.js";
export { DEFAULT_SOCKET_ROOT, defaultConfig, loadConfig, parseConfig, SYSTEM_CONFIG_PATH } from "./load.js";
export { packageRoot } from "./package-root.js";
