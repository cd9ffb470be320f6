// Per-pod overrides of the configuration by annotation, as Kata takes them: of the keys under
// `io.katacontainers.config.` (and moat's own `io.moat.config.`), only
// `hypervisor.default_vcpus` and `hypervisor.default_memory`, and each only where
// `[hypervisor.qemu] enable_annotations` lists it (a name or a regular expression matched
// against the whole name). Any other annotation under those prefixes is refused, naming it
// and the rule: an annotation comes from whoever writes the pod, and a configuration key it
// could set (kernel_params, the guest image, the hypervisor's path) is the node's to choose.
import { MoatError } from "../../shared/errors.js";
import { Code } from "../../shared/ttrpc/index.js";
import type { Config } from "./config.js";

export const ANNOTATION_PREFIXES = ["io.katacontainers.config.", "io.moat.config."] as const;

/** The overridable keys, after the prefix, with their bounds (those of the configuration keys). */
const OVERRIDES = {
  "hypervisor.default_vcpus": { min: 1, max: 64, unit: "vCPUs", apply: (config: Config, value: number) => ({ ...config, qemu: { ...config.qemu, defaultVcpus: value } }) },
  "hypervisor.default_memory": { min: 128, max: 1024 * 1024, unit: "MiB", apply: (config: Config, value: number) => ({ ...config, qemu: { ...config.qemu, defaultMemoryMiB: value } }) },
} as const;

/**
 * `config` with the overrides the annotations ask for and the configuration allows; throws
 * MOAT_ANNOTATION_REFUSED for any annotation under the prefixes that is not one, and
 * MOAT_BUNDLE_INVALID for an allowed one whose value is out of bounds. `where` names the spec.
 */
export function configForAnnotations(config: Config, annotations: Record<string, string>, where: string): Config {
  let result = config;
  const file = config.source ?? "the built-in configuration";
  for (const [key, value] of Object.entries(annotations)) {
    const prefix = ANNOTATION_PREFIXES.find((candidate) => key.startsWith(candidate));
    if (prefix === undefined) continue;
    const rest = key.slice(prefix.length);
    const override = Object.hasOwn(OVERRIDES, rest) ? OVERRIDES[rest as keyof typeof OVERRIDES] : undefined; // a key of OVERRIDES, checked in the same expression
    const name = rest.slice("hypervisor.".length);
    const allowed = override !== undefined && config.qemu.enableAnnotations.some((pattern) => new RegExp(`^(?:${pattern})$`).test(name));
    if (!override || !allowed) {
      const rule = `only ${prefix}hypervisor.default_vcpus and ${prefix}hypervisor.default_memory may override the configuration, each where [hypervisor.qemu] enable_annotations in ${file} allows its name (it allows ${config.qemu.enableAnnotations.length > 0 ? config.qemu.enableAnnotations.map((pattern) => JSON.stringify(pattern)).join(", ") : "none"})`;
      throw new MoatError("MOAT_ANNOTATION_REFUSED", `${where}: annotations["${key}"]: refused: ${rule}`, {
        hint: override ? `add "${name}" to enable_annotations to allow it` : "remove the annotation",
        status: Code.INVALID_ARGUMENT,
      });
    }
    const number = /^[0-9]{1,8}$/.test(value) ? Number(value) : Number.NaN;
    if (!(number >= override.min && number <= override.max)) {
      throw new MoatError("MOAT_BUNDLE_INVALID", `${where}: annotations["${key}"]: must be a whole number from ${override.min} to ${override.max} (${override.unit}), got ${JSON.stringify(value)}`, { status: Code.INVALID_ARGUMENT });
    }
    result = override.apply(result, number);
  }
  return result;
}
