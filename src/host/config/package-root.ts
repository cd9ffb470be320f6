// Where moat's own files are: the directory holding its package.json. Built guest artifacts
// live below it, in dist/guest (linked there from the build cache by `make guest`).
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

let cached: string | undefined;

export function packageRoot(): string {
  if (cached) return cached;
  if (process.env.MOAT_HOME) return (cached = process.env.MOAT_HOME);
  // Bundled (dist/bundle/moat.mjs) or compiled (dist/src/host/config/*.js): walk up to moat's package.json.
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const manifest = join(dir, "package.json");
    if (existsSync(manifest) && JSON.parse(readFileSync(manifest, "utf8")).name === "moat") return (cached = dir);
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`cannot find moat's package.json above ${fileURLToPath(import.meta.url)}; set MOAT_HOME`);
    dir = parent;
  }
}
