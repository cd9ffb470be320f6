export { builtinImage, type Image } from "./builtin.js";
