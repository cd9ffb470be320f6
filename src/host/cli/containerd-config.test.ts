import assert from "node:assert/strict";
import { test } from "node:test";
import { containerdConfigFindings } from "./containerd-config.js";

const kataSnippet = `
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.kata]
  privileged_without_host_devices = true
  runtime_type = "io.containerd.kata.v2"
  runtime_root = "/opt/kata/rootfs"
  sandbox_cgroup_parent = "kubepods"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.kata.options]
    SystemdCgroup = true
`;

test("runtime_root under a kata or moat runtime is found, with the fix", () => {
  const findings = containerdConfigFindings(kataSnippet);
  assert.equal(findings.length, 1);
  assert.equal(findings[0]!.key, 'plugins."io.containerd.grpc.v1.cri".containerd.runtimes.kata.runtime_root'); // length checked above
  assert.match(findings[0]!.problem, /refuses runtime_root for io.containerd.kata.v2/);
  assert.match(findings[0]!.fix, /remove the runtime_root line/);
});

test("the same snippet without runtime_root, other runtimes' runtime_root, and garbage find nothing", () => {
  assert.deepEqual(containerdConfigFindings(kataSnippet.replace(/ *runtime_root.*\n/, "")), []);
  assert.deepEqual(containerdConfigFindings('[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.old]\nruntime_type = "io.containerd.runtime.v1.linux"\nruntime_root = "/x"\n'), []);
  assert.deepEqual(containerdConfigFindings("this is [not toml"), []);
  assert.deepEqual(containerdConfigFindings('plugins = "a string"\n'), []);
});
