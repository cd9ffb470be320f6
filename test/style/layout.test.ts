// Checks of the layout README.md's "Layout" section describes: guest and host never import each other, shared
// imports neither, dependencies point one way (moatd → cli/shim → daemon → sandbox → …), every error code is documented, and
// docs/cli.md is what `moat --help` says.
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { test } from "node:test";
import { repoRoot } from "../integration/harness/moat-cli.js";
import { cliMarkdown } from "../../src/host/cli/cli-markdown.js";

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return name === "gen" ? [] : sources(path);
    return path.endsWith(".ts") ? [path] : [];
  });
}

const src = join(repoRoot, "src");
const files = sources(src);

/** Each relative import of a file, as a path relative to src/ ("host/config/index.ts"). */
function importsOf(file: string): string[] {
  const text = readFileSync(file, "utf8");
  return [...text.matchAll(/from "(\.[^"]+)"/g)].map((match) => relative(src, resolve(dirname(file), match[1]!.replace(/\.js$/, ".ts")))); // group 1 is the path
}

/** Which layer a path is in: "guest", "shared", or the host folder ("host/cli"). */
function layer(path: string): string {
  const [side, folder] = path.split("/");
  return side === "host" ? `host/${folder}` : side ?? "";
}

// Each layer may import only the layers listed for it (and itself).
const allowed: Record<string, string[]> = {
  shared: [],
  guest: ["shared"],
  "host/config": ["shared", "host/hypervisor", "host/storage"],
  "host/hypervisor": ["shared"],
  "host/storage": ["shared", "host/hypervisor"],
  "host/cgroup": ["shared"],
  "host/network": ["shared", "host/config", "host/hypervisor"],
  "host/oci": ["shared", "host/cgroup"],
  "host/images": ["shared", "host/config"],
  "host/factory": ["shared", "host/config", "host/hypervisor", "host/storage"],
  "host/sandbox": ["shared", "host/config", "host/hypervisor", "host/oci", "host/images", "host/factory", "host/storage", "host/cgroup", "host/network"],
  "host/daemon": ["shared", "host/config", "host/oci", "host/sandbox", "host/factory", "host/cgroup"],
  "host/standin": ["shared", "host/config"],
  "host/shim": ["shared", "host/config", "host/daemon", "host/standin"],
  "host/moatd": ["shared", "host/config", "host/daemon", "host/shim"],
  "host/cli": ["shared", "host/config", "host/hypervisor", "host/sandbox", "host/images", "host/oci", "host/daemon", "host/factory", "host/storage", "host/standin"],
};

test("imports point one way: cli → sandbox → hypervisor/config → shared; guest and host apart", () => {
  const violations: string[] = [];
  for (const file of files) {
    const from = layer(relative(src, file));
    for (const target of importsOf(file)) {
      if (file.endsWith(".test.ts") && target.startsWith("../test/support/")) continue; // unit tests share fixtures
      const to = layer(target);
      if (to !== from && !(allowed[from] ?? []).includes(to)) violations.push(`${relative(src, file)} imports ${target}`);
    }
  }
  assert.deepEqual(violations, []);
});

test("other folders import a host folder only through its index.ts", () => {
  const violations: string[] = [];
  for (const file of files.filter((path) => !path.endsWith(".test.ts"))) {
    const from = layer(relative(src, file));
    for (const target of importsOf(file)) {
      if (target.startsWith("host/") && layer(target) !== from && !target.endsWith("/index.ts")) violations.push(`${relative(src, file)} imports ${target}`);
    }
  }
  assert.deepEqual(violations, []);
});

test("every error code in the code is documented in docs/errors.md", () => {
  const documented = readFileSync(join(repoRoot, "docs", "errors.md"), "utf8");
  const codes = new Set(files.filter((file) => !file.endsWith(".test.ts")).flatMap((file) => [...readFileSync(file, "utf8").matchAll(/"(MOAT_[A-Z_]+)"/g)].map((match) => match[1]!)));
  const missing = [...codes].filter((code) => !documented.includes(`\`${code}\``));
  assert.deepEqual(missing, []);
});

test("docs/cli.md is generated from the command table (make docs)", () => {
  assert.equal(readFileSync(join(repoRoot, "docs", "cli.md"), "utf8"), cliMarkdown());
});
