// `moat install` (issues 3 and 4): the shim on the PATH, containerd's configuration checked
// for what cannot work (Kata's runtime_root), and a systemd unit whose ExecStart really runs
// moatd for this state root.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { after, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { join } from "node:path";
import { runMoat } from "./harness/moat-cli.js";
import { TestWorkspace } from "./harness/state-root.js";

const workspace = new TestWorkspace();
after(async () => {
  await workspace.stopDaemon();
  workspace.remove();
});

test("install: shim links, a warning for Kata's runtime_root, and a moatd unit that runs", async () => {
  const containerdConfig = join(workspace.dir, "containerd.toml");
  writeFileSync(
    containerdConfig,
    '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.kata]\n  runtime_type = "io.containerd.kata.v2"\n  runtime_root = "/opt/kata/rootfs"\n',
  );
  const units = join(workspace.dir, "units");
  const result = await runMoat([
    "--root", workspace.stateRoot, "install", "--prefix", join(workspace.dir, "bin"), "--kata-compat",
    "--containerd-config", containerdConfig, "--systemd", "--unit-dir", units,
  ]);
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stdout, /containerd-shim-kata-v2 -> .*containerd-shim-moat-v2/);
  assert.match(result.stdout, /warning: .*containerd.toml: plugins."io.containerd.grpc.v1.cri".containerd.runtimes.kata.runtime_root: containerd 1.6 refuses runtime_root/);
  assert.match(result.stdout, /fix: remove the runtime_root line/);

  // Run the unit's command as systemd would, and talk to the daemon it starts.
  const unit = readFileSync(join(units, "moatd.service"), "utf8");
  assert.match(unit, /^KillMode=process$/m);
  const execStart = /^ExecStart=(.*)$/m.exec(unit)?.[1]?.split(" ") ?? [];
  assert.ok(execStart.includes(workspace.stateRoot), unit);
  const daemon = spawn(execStart[0]!, execStart.slice(1), { stdio: "ignore" }); // ExecStart has a command, checked above
  try {
    for (let tries = 0; !existsSync(join(workspace.stateRoot, "moatd.sock")) && tries < 200; tries++) await sleep(50);
    const list = await runMoat(["--root", workspace.stateRoot, "list", "-q"]);
    assert.equal(list.code, 0, list.stderr);
    assert.deepEqual(workspace.daemonProcesses().map((line) => Number(line.split(" ")[0])), [daemon.pid], "the CLI used the unit's daemon, not one of its own");
  } finally {
    daemon.kill("SIGTERM");
  }
});
