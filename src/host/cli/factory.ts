// `moat factory init|status|destroy`: the VM templates sandboxes restore from
// (docs/templates.md). Sandboxes build the template themselves when there is none; `init`
// does it ahead of time and proves that a VM restores from it on this host.
import { randomBytes } from "node:crypto";
import { MoatError } from "../../shared/errors.js";
import { Code } from "../../shared/ttrpc/index.js";
import { loadConfig, type Config } from "../config/index.js";
import { destroyTemplates, listTemplates, MAX_TEMPLATES, readyPoolVms, templateKey, templateRoot } from "../factory/index.js";
import { vmBase } from "../sandbox/index.js";
import { bootThroughDaemon } from "./boot.js";
import { withOverrides, type GlobalOptions } from "./global-options.js";

function configOf(global: GlobalOptions): Config {
  return withOverrides(loadConfig(global.config), global);
}

/** Builds the template if needed, then restores one VM from it and shuts it down. */
export async function factoryInitCommand(global: GlobalOptions): Promise<void> {
  const config = configOf(global);
  if (!config.factory.enableTemplate) {
    throw new MoatError("MOAT_TEMPLATE_OFF", `${config.source ?? "configuration"}: [factory] enable_template is false`, { hint: "set enable_template = true to use VM templates", status: Code.FAILED_PRECONDITION });
  }
  // moatd makes the sandbox (and the template, if it must), as it makes every sandbox.
  const booted = await bootThroughDaemon(config.runtime.stateRoot, `factory-init-${randomBytes(4).toString("hex")}`, global);
  if (booted.startKind === "cold") throw new MoatError("MOAT_TEMPLATE_BUILD", `templates do not work on this host: ${booted.start.replace(/^cold boot: /, "")}`, { status: Code.FAILED_PRECONDITION });
  process.stdout.write(`template ready in ${templateRoot(config)}; a VM restored from it answered ${Math.round(booted.agentReadyMs)} ms after QEMU started\n`);
}

/**
 * Lists the templates, marking the one the current configuration's default size uses
 * ("current"), those of other sizes made from the same inputs ("sized") and those left from
 * older inputs ("stale"); then the warm pool.
 */
export async function factoryStatusCommand(global: GlobalOptions): Promise<void> {
  const config = configOf(global);
  const current = await templateKey(await vmBase(config), config.qemu.path);
  const templates = await listTemplates(config);
  const family = templates.find((template) => template.key === current)?.family;
  process.stdout.write(`templates: ${config.factory.enableTemplate ? "on" : "off ([factory] enable_template = false)"}; kept in ${templateRoot(config)}, at most ${MAX_TEMPLATES}\n`);
  if (templates.length === 0) process.stdout.write("none built yet: the first sandbox builds one, or run `moat factory init`\n");
  for (const template of templates) {
    const mark = template.key === current ? "current" : template.family === family ? "sized" : "stale";
    const size = `${template.vcpus} vCPU${template.vcpus === 1 ? "" : "s"}, ${template.memoryMiB} MiB${template.nics > 0 ? `, ${template.nics} NIC${template.nics === 1 ? "" : "s"}` : ""}`;
    process.stdout.write(`${template.key}  ${mark.padEnd(7)}  saved ${template.created}  ${size}; memory ${Math.round(template.memoryBytes / 1024 / 1024)} MiB in use, state ${Math.round(template.stateBytes / 1024)} KiB\n`);
  }
  const ready = await readyPoolVms(config);
  const { vmCacheNumber, vmCacheNetworked } = config.factory;
  const wanted = vmCacheNumber + vmCacheNetworked;
  const networked = vmCacheNetworked > 0 ? `, ${vmCacheNetworked} of them with one NIC` : "";
  process.stdout.write(wanted === 0 && ready.length === 0 ? "warm pool: off ([factory] vm_cache_number = 0)\n" : `warm pool: ${ready.length} of ${wanted} VMs ready${ready.length > 0 ? ` (${ready.join(", ")})` : ""}${networked}; moatd keeps it\n`);
}

export async function factoryDestroyCommand(global: GlobalOptions): Promise<void> {
  const config = configOf(global);
  const count = await destroyTemplates(config);
  process.stdout.write(`removed ${count} template${count === 1 ? "" : "s"} from ${templateRoot(config)}\n`);
}
