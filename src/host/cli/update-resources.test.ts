import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { rejectsWithCode } from "../../../test/support/assertions.js";
import { updateResources } from "./update-resources.js";

test("flags become LinuxResources sections, sizes in bytes", () => {
  assert.deepEqual(updateResources("c1", { memory: "256m", cpuQuota: "50000", cpuPeriod: "100000", pidsLimit: "64", cpusetCpus: "0" }), {
    memory: { limit: 256 * 1024 * 1024 },
    cpu: { quota: 50000, period: 100000, cpus: "0" },
    pids: { limit: 64 },
  });
});

test("--resources - reads stdin; flags are laid over the file's values", () => {
  const resources = updateResources("c1", { resources: "-", pidsLimit: "10" }, () => JSON.stringify({ pids: { limit: 5 }, memory: { limit: 1024 } }));
  assert.deepEqual(resources, { pids: { limit: 10 }, memory: { limit: 1024 } });
});

test("--resources FILE", (t) => {
  const dir = mkdtempSync(join(tmpdir(), "moat-update-"));
  t.after(() => rmSync(dir, { recursive: true }));
  const file = join(dir, "resources.json");
  writeFileSync(file, JSON.stringify({ cpu: { shares: 512 } }));
  assert.deepEqual(updateResources("c1", { resources: file }), { cpu: { shares: 512 } });
});

test("bad input names the flag or file", async () => {
  await rejectsWithCode((async () => updateResources("c1", { memory: "lots" }))(), "MOAT_CLI_UPDATE", /--memory: must be a size/);
  await rejectsWithCode((async () => updateResources("c1", { pidsLimit: "1.5" }))(), "MOAT_CLI_UPDATE", /--pids-limit: must be a whole number/);
  await rejectsWithCode((async () => updateResources("c1", { resources: "-" }, () => "[1]"))(), "MOAT_CLI_UPDATE", /stdin: must be a JSON object/);
  await rejectsWithCode((async () => updateResources("c1", { resources: "/nonexistent/r.json" }))(), "MOAT_CLI_UPDATE", /\/nonexistent\/r.json: cannot read/);
  await rejectsWithCode((async () => updateResources("c1", {}))(), "MOAT_CLI_UPDATE", /give --resources FILE/);
});
