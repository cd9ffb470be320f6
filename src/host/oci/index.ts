export { defaultSpec, type ProcessOptions } from "./default-spec.js";
export { isBindMount, loadBundle, type Bundle, type OciMount, type OciSpec } from "./bundle.js";
export { guestSpec, shareTag, withoutNetworkNamespace, type FileBind, type GuestShare, type GuestSpecInput } from "./guest-spec.js";
export { guestResources } from "./guest-resources.js";
export type { GuestTmpfs } from "./memory-volume.js";
export { consoleSize, type WindowSize } from "./console-size.js";
export { checkProcessDocument, checkSpec } from "./spec-check.js";
export { memberNamespaces, podRole, sandboxResources, type JoinedNamespace, type PodRole } from "./pod.js";
export { asksNewNetworkNamespace, hostHooks, networkNamespacePath, runHooks, runHooksWarning, specAnnotations, type HookState, type HostHookKind, type OciHook } from "./hooks.js";
