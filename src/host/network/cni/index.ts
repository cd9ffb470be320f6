// CNI (the Container Network Interface, spec 1.0.0 and 0.4.0): network configuration lists
// found by name in a conf dir and checked, and their plugins run for ADD and DEL with the
// spec's environment, prevResult chaining and capability args. moat is the runtime here, as
// nerdctl is for containerd: `moat run --network NAME` (docs/networking.md).
export { checkConflist, loadNetwork, SUPPORTED_CNI_VERSIONS, type CniNetwork, type Conflist, type PluginConf } from "./conflist.js";
export { checkAttachment, parsePortMapping, parseResult, pluginConfig, pluginEnv, pluginFailure, type CniAttachment, type CniCommand, type CniResult, type PortMapping } from "./protocol.js";
export { cniAdd, cniDel, DEFAULT_CNI_CONF_DIR, DEFAULT_CNI_PATH } from "./run.js";
