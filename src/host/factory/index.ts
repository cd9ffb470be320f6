export {
  destroyTemplates,
  emptyShareDir,
  ensureTemplate,
  listTemplates,
  restoreFromTemplate,
  slotShares,
  templateKey,
  templateRoot,
  TEMPLATE_SHARE_SLOTS,
  type Template,
  type TemplateBase,
  type TemplateStatus,
} from "./template.js";
