// bench/restore-loop: restores VMs from freshly built templates in a loop and counts the
// clones whose agent never answers (the lost wakeup, docs/templates.md). Not a figure: a tool
// to reproduce that failure and to measure what changes its rate.
//
//   node dist/bench/restore-loop.js [--templates T] [--restores R] [--nics K] [--vcpus V]
//        [--parallel P] [--timeout MS] [--qemu-arg ARG]...
//
// Each of T templates is built (with K backend-less NICs) and restored R times, P at a time.
// A clone whose agent does not answer within --timeout is looked at (vCPU states, the local
// APICs, the I/O APICs, the console) and reported; the count is the result. --qemu-arg adds
// arguments to every QEMU (templates and clones) through a wrapper, to try a setting.
import { readFile, stat } from "node:fs/promises";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { loadConfig } from "../src/host/config/index.js";
import { ensureTemplate, restoreFromTemplate } from "../src/host/factory/index.js";
import { makeSocketDir, tailOf, vcpuReport, vmPaths, type VmSpec } from "../src/host/hypervisor/index.js";
import { removeStateDir } from "../src/host/storage/index.js";
import { AgentClient } from "../src/host/sandbox/agent-client.js";
import { vmBase } from "../src/host/sandbox/index.js";
import { connectUnix } from "../src/shared/ttrpc/index.js";

const { values } = parseArgs({
  options: {
    templates: { type: "string", default: "4" },
    restores: { type: "string", default: "5" },
    nics: { type: "string", default: "1" },
    vcpus: { type: "string", default: "1" },
    parallel: { type: "string", default: "2" },
    timeout: { type: "string", default: "20000" },
    "qemu-arg": { type: "string", multiple: true, default: [] },
  },
});
const [templates, restores, nicCount, vcpus, parallel, timeoutMs] = [values.templates, values.restores, values.nics, values.vcpus, values.parallel, values.timeout].map(Number);
const extra = values["qemu-arg"] ?? [];

const work = mkdtempSync(join(tmpdir(), "moat-restore-loop-"));
const config = loadConfig();
config.runtime.stateRoot = join(work, "state");
config.runtime.socketRoot = join(work, "s");
config.factory.enableTemplate = true;
if (extra.length > 0) {
  const wrapper = join(work, "qemu");
  writeFileSync(wrapper, `#!/bin/sh\nexec ${config.qemu.path} "$@" ${extra.map((arg) => `'${arg}'`).join(" ")}\n`, { mode: 0o755 });
  config.qemu.path = wrapper;
}

interface Outcome {
  ok: boolean;
  ms: number;
  overtaken?: boolean;
  /** The clone's QEMU's PSS once its agent answered. */
  pssKiB?: number;
  detail?: string;
}

async function restoreOnce(template: Awaited<ReturnType<typeof ensureTemplate>>, base: Awaited<ReturnType<typeof vmBase>>, id: string): Promise<Outcome> {
  const paths = vmPaths(join(config.runtime.stateRoot, id), config.runtime.socketRoot);
  mkdirSync(paths.sharesDir, { recursive: true });
  await makeSocketDir(paths, id);
  const spec: VmSpec = { ...base, id, paths, shares: [] };
  const started = performance.now();
  const vm = await restoreFromTemplate(config, template, spec);
  try {
    const agent = new AgentClient(await connectUnix(paths.agentSocket), id);
    try {
      await agent.check(timeoutMs);
      const ms = performance.now() - started;
      // The relay says when the host's first bytes overtook its port-open message (vport-relay.c).
      const console = await readFile(paths.consoleLog, "utf8").catch(() => "");
      const rollup = await readFile(`/proc/${vm.pid}/smaps_rollup`, "utf8").catch(() => "");
      const pssKiB = Number(/^Pss:\s+(\d+) kB/m.exec(rollup)?.[1] ?? 0);
      return { ok: true, ms, pssKiB, overtaken: console.includes("overtook its port-open message") };
    } catch (error) {
      const hmp = async (command: string) => String(await vm.qmp.execute("human-monitor-command", { "command-line": command }, 2000).catch((e: unknown) => `(${String(e)})`));
      const detail = [
        `error: ${error instanceof Error ? error.message : String(error)}`,
        `vcpus: ${await vcpuReport(vm.qmp, vm.pid)}`,
        `info lapic:\n${await hmp("info lapic")}`,
        `info pic:\n${await hmp("info pic")}`,
        `info irq:\n${await hmp("info irq")}`,
        `console: ${(await tailOf(paths.consoleLog, 20)) || "(empty)"}`,
        `vm.log: ${(await tailOf(paths.vmLog, 10)) || "(empty)"}`,
      ].join("\n");
      return { ok: false, ms: performance.now() - started, detail };
    } finally {
      agent.close();
    }
  } finally {
    await vm.kill();
    await removeStateDir(paths);
  }
}

async function main(): Promise<void> {
  let failed = 0;
  let done = 0;
  let overtaken = 0;
  const times: number[] = [];
  const pss: number[] = [];
  const templateKiB: number[] = [];
  for (let t = 0; t < templates; t++) {
    // A fresh template each time: the failures were seen with freshly built ones. The memory
    // size differs per template so that each is built anew (the key hashes it).
    const base = { ...(await vmBase(config, { vcpus, nics: nicCount })), memoryMiB: 512 + 4 * t };
    const template = await ensureTemplate(config, base);
    const queue = Array.from({ length: restores }, (_, r) => `t${t}-r${r}`);
    await Promise.all(
      Array.from({ length: parallel }, async () => {
        for (let id = queue.shift(); id !== undefined; id = queue.shift()) {
          const outcome = await restoreOnce(template, base, id);
          done++;
          if (outcome.overtaken) overtaken++;
          if (outcome.ok) times.push(outcome.ms);
          if (outcome.pssKiB) pss.push(outcome.pssKiB);
          else {
            failed++;
            console.log(`LOST ${id} after ${Math.round(outcome.ms)} ms\n${outcome.detail}\n`);
          }
        }
      }),
    );
    templateKiB.push(((await stat(template.memoryPath)).blocks * 512) / 1024);
    rmSync(template.dir, { recursive: true, force: true });
    console.log(`template ${t + 1}/${templates}: ${done} restores, ${failed} lost, ${overtaken} answered after the host's bytes overtook its port-open message`);
  }
  const median = (values: number[]) => Math.round([...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? 0);
  times.sort((a, b) => a - b);
  console.log(`RESULT nics=${nicCount} vcpus=${vcpus} parallel=${parallel} extra=[${extra.join(" ")}]: ${done} restores, ${failed} lost, ${overtaken} overtaken; agent p50 ${median(times)} ms (${Math.round(times[0] ?? 0)}–${Math.round(times[times.length - 1] ?? 0)}); clone QEMU PSS p50 ${median(pss)} KiB; template memory file p50 ${median(templateKiB)} KiB`);
}

main()
  .catch((error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  })
  .finally(() => rmSync(work, { recursive: true, force: true }));
