// The OCI spec's process and Linux settings take effect inside the guest (issue 3): user and
// groups, environment, cwd, rlimits, capabilities, no_new_privileges, masked and read-only
// paths, hostname and Linux resources, all read back from inside one container.
import assert from "node:assert/strict";
import { after, afterEach, test } from "node:test";
import { busyboxBundle } from "./harness/bundle.js";
import { runMoat } from "./harness/moat-cli.js";
import { DAEMON_FILES, TestWorkspace } from "./harness/state-root.js";

const workspace = new TestWorkspace();
afterEach(() => workspace.assertNothingLeft(DAEMON_FILES));
after(() => workspace.remove());

const probe = [
  "echo user=$(id -u):$(id -g) groups=$(id -G)",
  "echo env=$GREETING cwd=$(pwd) host=$(hostname)",
  "echo nofile=$(ulimit -n):$(ulimit -Hn)",
  "grep -E '^(CapEff|CapBnd|NoNewPrivs):' /proc/self/status | tr -s '\\t' ' '",
  "echo timer_list=$(wc -c < /proc/timer_list) firmware=$(ls /sys/firmware | wc -l)",
  "grep -q ' /proc/sys proc ro,' /proc/mounts && echo proc-sys=ro",
  "echo memory=$(cat /sys/fs/cgroup/memory.max) pids=$(cat /sys/fs/cgroup/pids.max)",
].join("; ");

test("process, capabilities, masked and read-only paths, and resources apply in the guest", async () => {
  const bundle = busyboxBundle(`${workspace.dir}/spec`, ["sh", "-c", probe], (spec) => {
    spec.hostname = "spec-host";
    spec.process.user = { uid: 1000, gid: 1000, additionalGids: [10, 20] };
    spec.process.env = [...(spec.process.env ?? []), "GREETING=hello"];
    spec.process.cwd = "/tmp";
    spec.process.rlimits = [{ type: "RLIMIT_NOFILE", soft: 100, hard: 200 }];
    spec.process.capabilities = { bounding: ["CAP_KILL"], effective: ["CAP_KILL"], permitted: ["CAP_KILL"], ambient: ["CAP_KILL"], inheritable: ["CAP_KILL"] };
    spec.process.noNewPrivileges = true;
    const linux = spec.linux as { resources: Record<string, unknown> }; // defaultSpec sets linux.resources
    linux.resources = { ...linux.resources, memory: { limit: 100 * 1024 * 1024 }, pids: { limit: 50 } };
  });
  const result = await runMoat(["--root", workspace.stateRoot, "run", "--bundle", bundle, "spec-1"]);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(
    result.stdout,
    [
      "user=1000:1000 groups=1000 10 20",
      "env=hello cwd=/tmp host=spec-host",
      "nofile=100:200",
      "CapEff: 0000000000000020", // CAP_KILL is bit 5
      "CapBnd: 0000000000000020",
      "NoNewPrivs: 1",
      "timer_list=0 firmware=0", // masked: /dev/null over a file, an empty tmpfs over a directory
      "proc-sys=ro",
      `memory=${100 * 1024 * 1024} pids=50`,
      "",
    ].join("\n"),
  );
});
