export type { Config, QemuConfig, AgentConfig, RuntimeConfig, FactoryConfig } from "./config.js";
export { defaultConfig, loadConfig, parseConfig, SYSTEM_CONFIG_PATH } from "./load.js";
export { packageRoot } from "./package-root.js";
