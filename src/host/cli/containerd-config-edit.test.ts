import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { parse } from "smol-toml";
import { MoatError } from "../../shared/errors.js";
import { packageRoot } from "../config/index.js";
import { addRuntimes, BLOCK_BEGIN, BLOCK_END, CRI_RUNTIMES_V2, removeBlock, runtimeTable } from "./containerd-config-edit.js";

const PATH = "/etc/containerd/config.toml";

// An operator's file: comments, a default runtime, another shim v2 runtime with options.
const operatorConfig = `# the node's containerd, kept by hand
version = 2

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.9" # pinned
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = true
    # gVisor, for the untrusted batch jobs
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runsc]
      runtime_type = "io.containerd.runsc.v1"`; // no newline at the end, on purpose

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof MoatError, String(error));
    return `${error.code}: ${error.message}`;
  }
  return "no error";
}

test("the runtimes are appended as one block; everything the operator wrote stays, byte for byte, in front of it", () => {
  const edit = addRuntimes(PATH, operatorConfig, ["moat", "kata"]);
  assert.deepEqual(edit.added, ["moat", "kata"]);
  assert.ok(edit.text.startsWith(operatorConfig));
  assert.equal(edit.text, operatorConfig + edit.block);
  assert.ok(edit.block!.startsWith("\n\n" + BLOCK_BEGIN + "\n"), "a newline for the unterminated last line, then a blank one"); // added is non-empty, so a block exists
  assert.ok(edit.block!.endsWith(BLOCK_END + "\n")); // as above
  const runtimes = (parse(edit.text) as any).plugins["io.containerd.grpc.v1.cri"].containerd.runtimes; // test: the shape is asserted below
  assert.equal(runtimes.moat.runtime_type, "io.containerd.moat.v2");
  assert.equal(runtimes.kata.runtime_type, "io.containerd.kata.v2");
  assert.equal(runtimes.kata.runtime_root, undefined);
  assert.deepEqual(runtimes.kata.pod_annotations, ["io.katacontainers.*", "io.moat.*"]);
  assert.equal(runtimes.runc.options.SystemdCgroup, true, "the other runtimes are untouched");
  assert.equal(runtimes.runsc.runtime_type, "io.containerd.runsc.v1");
});

test("a second run finds both and adds nothing; one present, one missing adds the missing one only", () => {
  const first = addRuntimes(PATH, operatorConfig, ["moat", "kata"]);
  const second = addRuntimes(PATH, first.text, ["moat", "kata"]);
  assert.equal(second.block, undefined);
  assert.equal(second.text, first.text);
  assert.deepEqual(second.present, ["moat", "kata"]);
  const onlyMoat = addRuntimes(PATH, operatorConfig + "\n", ["moat"]);
  const both = addRuntimes(PATH, onlyMoat.text, ["moat", "kata"]);
  assert.deepEqual([both.added, both.present], [["kata"], ["moat"]]);
});

test("uninstall gives the original back byte for byte, also after the operator edited elsewhere", () => {
  const edit = addRuntimes(PATH, operatorConfig, ["moat", "kata"]);
  assert.equal(removeBlock(PATH, edit.text, edit.block!), operatorConfig); // added is non-empty
  const edited = "# a line the operator added later\n" + edit.text + "\n# and one after\n";
  assert.equal(removeBlock(PATH, edited, edit.block!), "# a line the operator added later\n" + operatorConfig + "\n# and one after\n"); // as above
  assert.match(codeOf(() => removeBlock(PATH, edit.text.replace("io.containerd.moat.v2", "io.containerd.moat.v3"), edit.block!)), /^MOAT_NODE_UNINSTALL: \/etc\/containerd\/config.toml: the block moat added/); // as above
});

test("no file: a version 2 file holding only moat's block", () => {
  const edit = addRuntimes(PATH, undefined, ["moat"]);
  assert.equal(edit.text, "version = 2\n" + edit.block);
  assert.equal((parse(edit.text) as any).plugins["io.containerd.grpc.v1.cri"].containerd.runtimes.moat.runtime_type, "io.containerd.moat.v2"); // test: checked by the equality
});

test("version 3 (containerd 2): the tables go under io.containerd.cri.v1.runtime", () => {
  const edit = addRuntimes(PATH, "version = 3\n", ["kata"]);
  assert.match(edit.block!, /^\[plugins\."io\.containerd\.cri\.v1\.runtime"\.containerd\.runtimes\.kata\]$/m); // added is non-empty
});

test("bad input: not TOML (file and line), version 1, a conflicting table, runtime_root, an inline runtimes table", () => {
  assert.match(codeOf(() => addRuntimes(PATH, 'version = 2\n[plugins\n  x = 1\n', ["moat"])), /^MOAT_NODE_CONFIG_INVALID: \/etc\/containerd\/config.toml:2:\d+: not TOML: /);
  assert.match(codeOf(() => addRuntimes(PATH, '[plugins.cri.containerd]\nsnapshotter = "overlayfs"\n', ["moat"])), /^MOAT_NODE_CONFIG_INVALID: .*a version 1 configuration \(no `version` key\)/);
  assert.match(codeOf(() => addRuntimes(PATH, "version = 1\n", ["moat"])), /version 1 configuration \(version = 1\)/);
  assert.match(codeOf(() => addRuntimes(PATH, 'version = "2"\n', ["moat"])), /version: "2" is not a containerd configuration version/);
  const kataReal = 'version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.kata]\n  runtime_type = "io.containerd.kata.v2"\n  runtime_root = "/opt/kata/rootfs"\n';
  assert.match(codeOf(() => addRuntimes(PATH, kataReal, ["moat"])), /^MOAT_NODE_RUNTIME_ROOT: .*runtimes\.kata\.runtime_root: containerd 1\.6 refuses runtime_root for io\.containerd\.kata\.v2/);
  const conflict = 'version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.kata]\n  runtime_type = "io.containerd.runc.v2"\n';
  assert.match(codeOf(() => addRuntimes(PATH, conflict, ["moat", "kata"])), /^MOAT_NODE_RUNTIME_CONFLICT: .*plugins\."io\.containerd\.grpc\.v1\.cri"\.containerd\.runtimes\.kata: already configured with runtime_type "io\.containerd\.runc\.v2"/);
  assert.equal(addRuntimes(PATH, conflict, ["moat"]).added[0], "moat", "a conflict on a handler not asked for is not one");
  const inline = 'version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd]\n  runtimes = { runc = { runtime_type = "io.containerd.runc.v2" } }\n';
  assert.match(codeOf(() => addRuntimes(PATH, inline, ["moat"])), /^MOAT_NODE_CONFIG_INVALID: .*cannot be added to this file/);
});

test("deploy/containerd-snippet.toml holds exactly the tables the installer appends", () => {
  const snippet = readFileSync(join(packageRoot(), "deploy", "containerd-snippet.toml"), "utf8");
  const tables = snippet.split("\n").filter((line) => !line.startsWith("#")).join("\n");
  assert.equal(tables, runtimeTable(CRI_RUNTIMES_V2, "moat") + runtimeTable(CRI_RUNTIMES_V2, "kata"));
  assert.equal(addRuntimes(PATH, `version = 2\n${snippet}`, ["moat", "kata"]).block, undefined, "a file holding the snippet needs nothing more");
});
