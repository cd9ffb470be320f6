// moat's version, the same for host and guest: both are bundled from one commit, and the
// bundler defines __MOAT_VERSION__ from package.json (build/bundle.mjs).
declare const __MOAT_VERSION__: string | undefined;

export const MOAT_VERSION: string = typeof __MOAT_VERSION__ === "string" ? __MOAT_VERSION__ : "0.0.0-unbundled";
