export type { Config, QemuConfig, AgentConfig, RuntimeConfig, FactoryConfig } from "./config.js";
export { DEFAULT_SOCKET_ROOT, defaultConfig, loadConfig, parseConfig, parseVmmUser, SYSTEM_CONFIG_PATH } from "./load.js";
export { vmmLaunch, type VmmLaunch } from "./vmm-launch.js";
export { packageRoot } from "./package-root.js";
export { ANNOTATION_PREFIXES, configForAnnotations } from "./annotations.js";
