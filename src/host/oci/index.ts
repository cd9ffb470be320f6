export { defaultSpec, type ProcessOptions } from "./default-spec.js";
export { isBindMount, loadBundle, type Bundle, type OciMount, type OciSpec } from "./bundle.js";
export { guestSpec, ROOTFS_TAG, type GuestShare } from "./guest-spec.js";
