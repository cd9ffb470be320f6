// Fuzz targets (test/support/fuzz.ts) for what a client hands moat as OCI JSON:
// - "oci-config-json": a bundle's config.json of any bytes, read by loadBundle as `moat
//   create` and the shim read it: a Bundle or MOAT_BUNDLE_INVALID;
// - "oci-process-json": an exec's process object (`moat exec --process`, a task's exec):
//   warnings or MOAT_BUNDLE_INVALID;
// - "oci-annotations": a spec whose annotations hold anything: the same.
// Inputs start from moat's default spec, mutated at the byte level or field by field.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import fc from "fast-check";
import { bytesNear, expectMoatError, fuzzTarget } from "../../../test/support/fuzz.js";
import { loadBundle } from "./bundle.js";
import { defaultSpec } from "./default-spec.js";
import { checkProcessDocument, checkSpec } from "./spec-check.js";

const bundleDir = mkdtempSync(join(tmpdir(), "moat-fuzz-bundle-"));
mkdirSync(join(bundleDir, "rootfs"));
after(() => rmSync(bundleDir, { recursive: true, force: true }));

const base = () => defaultSpec({ args: ["sh"], env: ["PATH=/bin"], cwd: "/", hostname: "h" }) as unknown as Record<string, unknown>;
const odd = fc.oneof(
  fc.jsonValue({ maxDepth: 2 }),
  fc.constantFrom(-1, 2 ** 32, 2 ** 64, 1e308, -0, "", "/", "..", "../../etc", "\u0000", "x".repeat(70_000), [], {}, null),
);

/** The default spec with one top-level or process field replaced by `value` (undefined: removed). */
const specs = fc
  .tuple(fc.constantFrom("ociVersion", "process", "root", "hostname", "mounts", "linux", "annotations", "process.args", "process.env", "process.cwd", "process.user", "process.capabilities", "process.rlimits", "process.terminal", "process.consoleSize"), fc.option(odd, { nil: undefined }))
  .map(([field, value]) => {
    const spec = base();
    const [top, inner] = field.split(".") as [string, string | undefined];
    const holder = inner === undefined ? spec : (spec[top] as Record<string, unknown>); // process is an object in the default spec
    const key = inner ?? top;
    if (value === undefined) delete holder[key];
    else holder[key] = value;
    return spec;
  });

function onlyBundleErrors(run: () => void): void {
  try {
    run();
  } catch (error) {
    expectMoatError(error, ["MOAT_BUNDLE_INVALID"]);
  }
}

test("fuzz oci-config-json: any config.json ends in a bundle or MOAT_BUNDLE_INVALID", async () => {
  const inputs = bytesNear(specs.map((spec) => Buffer.from(JSON.stringify(spec))), 2048);
  await fuzzTarget(
    "oci-config-json",
    inputs,
    (input) => {
      writeFileSync(join(bundleDir, "config.json"), input);
      onlyBundleErrors(() => loadBundle(bundleDir));
    },
    1500,
  );
});

test("fuzz oci-process-json: any process object ends in warnings or MOAT_BUNDLE_INVALID", async () => {
  const processes = specs.map((spec) => Buffer.from(JSON.stringify(spec.process ?? null)));
  await fuzzTarget(
    "oci-process-json",
    bytesNear(processes, 1024),
    (input) => {
      let document: unknown;
      try {
        document = JSON.parse(input.toString("utf8"));
      } catch {
        return; // not JSON: refused before the checker (daemon.ts parses with its own error)
      }
      onlyBundleErrors(() => checkProcessDocument(document, "process.json"));
    },
    2000,
  );
});

test("fuzz oci-annotations: any annotations end in a spec or MOAT_BUNDLE_INVALID", async () => {
  const annotations = fc.oneof(
    fc.dictionary(fc.string({ maxLength: 80, unit: "binary" }), fc.oneof(fc.string({ maxLength: 80, unit: "binary" }), odd), { maxKeys: 6 }),
    odd,
    fc.constant(Object.fromEntries(Array.from({ length: 5000 }, (_, index) => [`io.katacontainers.config.hypervisor.k${index}`, "v"]))),
  );
  await fuzzTarget(
    "oci-annotations",
    annotations.map((value) => Buffer.from(JSON.stringify(value) ?? "null")),
    (input) => {
      let value: unknown;
      try {
        value = JSON.parse(input.toString("utf8"));
      } catch {
        return;
      }
      onlyBundleErrors(() => checkSpec({ ...base(), annotations: value }, "config.json"));
    },
    1000,
  );
});
