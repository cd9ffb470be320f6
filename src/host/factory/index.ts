export {
  destroyTemplates,
  ensureTemplate,
  listTemplates,
  MAX_TEMPLATES,
  memorySizeClassMiB,
  removeAbandonedBuilds,
  restoreFromTemplate,
  templateKey,
  templateRoot,
  type Template,
  type TemplateBase,
  type TemplateStatus,
} from "./template.js";
export { POOL_MEMORY_FLOOR_MIB, readyPoolVms, removePoolLeftovers, VmPool, type PoolOptions, type TakeResult } from "./pool.js";
