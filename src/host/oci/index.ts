export { defaultSpec, type ProcessOptions } from "./default-spec.js";
