// Bundles each program into one JavaScript file with esbuild, so that it starts without
// resolving hundreds of modules: the guest agent (it goes into the guest image) and the
// host CLI, moatd, and the containerd shim's Node half. __MOAT_VERSION__ is package.json's version, the same on both sides.
import { build } from "esbuild";
import { readFile } from "node:fs/promises";

const { version } = JSON.parse(await readFile(new URL("../package.json", import.meta.url), "utf8"));

const programs = [
  { entry: "src/guest/agent/main.ts", out: "dist/bundle/agent.js" },
  { entry: "src/host/cli/main.ts", out: "dist/bundle/moat.mjs", format: "esm" },
  { entry: "src/host/moatd/main.ts", out: "dist/bundle/moatd.mjs", format: "esm" },
  { entry: "src/host/shim/main.ts", out: "dist/bundle/shim.mjs", format: "esm" },
];

await Promise.all(
  programs.map(({ entry, out, format }) =>
    build({
      entryPoints: [entry],
      outfile: out,
      bundle: true,
      platform: "node",
      target: "node20",
      format: format ?? "cjs",
      sourcemap: "linked",
      legalComments: "none",
      define: { __MOAT_VERSION__: JSON.stringify(version) },
      // CommonJS dependencies (commander) call require(); give the ES module one.
      banner: format === "esm" ? { js: 'import { createRequire } from "node:module"; const require = createRequire(import.meta.url);' } : {},
      logLevel: "warning",
    }),
  ),
);
