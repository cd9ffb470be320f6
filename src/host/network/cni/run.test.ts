// The runner against plugins that are shell scripts: each appends what it was given (its
// CNI_COMMAND and its stdin) to a log and answers as a plugin would, so the order of ADD and
// DEL, the prevResult chain and the undo of a failed ADD are seen from the plugin's side.
// (The integration tests run Debian's real plugins.)
import assert from "node:assert/strict";
import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { MoatError } from "../../../shared/errors.js";
import { checkConflist, type CniNetwork } from "./conflist.js";
import type { CniAttachment } from "./protocol.js";
import { cniAdd, cniDel } from "./run.js";

interface Call {
  command: string;
  type: string;
  env: string;
  prevResult?: { chain: string[] };
}

async function fixture(t: { after: (fn: () => Promise<void>) => void }) {
  const dir = await mkdtemp(join(tmpdir(), "moat-cni-run-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const log = join(dir, "calls.log");
  // A plugin: logs {command, type, env, prevResult}; ADD answers prevResult's chain plus its own type.
  const plugin = (type: string, fail: string) => `#!/bin/sh
config=$(cat)
printf '{"command":"%s","type":"${type}","env":"%s %s %s %s","prevResult":%s}\\n' "$CNI_COMMAND" "$CNI_CONTAINERID" "$CNI_NETNS" "$CNI_IFNAME" "$CNI_ARGS" "$(printf '%s' "$config" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>process.stdout.write(JSON.stringify(JSON.parse(s).prevResult ?? null)))')" >> ${log}
${fail}
if [ "$CNI_COMMAND" = ADD ]; then
  printf '%s' "$config" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const c=JSON.parse(s);process.stdout.write(JSON.stringify({cniVersion:c.cniVersion,interfaces:[{name:"eth0"}],chain:[...(c.prevResult?.chain??[]),c.type]}))})'
fi
`;
  const write = async (type: string, fail = "") => {
    await writeFile(join(dir, type), plugin(type, fail));
    await chmod(join(dir, type), 0o755);
  };
  await write("one");
  await write("two");
  await write("three");
  await write("fails", `if [ "$CNI_COMMAND" = ADD ]; then echo '{"cniVersion":"1.0.0","code":11,"msg":"no room","details":"range full"}'; exit 1; fi`);
  await write("fails-del", `if [ "$CNI_COMMAND" = DEL ]; then echo 'cannot' >&2; exit 3; fi`);
  const network = (types: string[]): CniNetwork => ({ file: join(dir, "t.conflist"), conflist: checkConflist({ cniVersion: "1.0.0", name: "t", plugins: types.map((type) => ({ type })) }, "t.conflist") });
  const attachment: CniAttachment = { containerId: "abc", netns: "/run/netns/x", ifName: "eth0", args: [["IgnoreUnknown", "1"]], cniPath: [join(dir, "empty"), dir], capabilityArgs: {} };
  const calls = async (): Promise<Call[]> =>
    (await readFile(log, "utf8").catch(() => ""))
      .split("\n")
      .filter((line) => line !== "")
      .map((line) => JSON.parse(line) as Call); // written by the plugin above
  return { network, attachment, calls, log };
}

test("ADD runs the plugins in order, chaining results; DEL runs them in reverse with the final result", async (t) => {
  const { network, attachment, calls } = await fixture(t);
  const net = network(["one", "two", "three"]);
  const result = await cniAdd(net, attachment);
  assert.deepEqual(result.chain, ["one", "two", "three"]);
  await cniDel(net, attachment, result);
  const seen = await calls();
  assert.deepEqual(seen.map((call) => `${call.command} ${call.type}`), ["ADD one", "ADD two", "ADD three", "DEL three", "DEL two", "DEL one"]);
  assert.deepEqual(seen.map((call) => call.prevResult?.chain ?? null), [null, ["one"], ["one", "two"], ["one", "two", "three"], ["one", "two", "three"], ["one", "two", "three"]]);
  assert.equal(seen[0]?.env, "abc /run/netns/x eth0 IgnoreUnknown=1");
});

test("a failed ADD deletes what was added, from the failing plugin down, and names the plugin", async (t) => {
  const { network, attachment, calls } = await fixture(t);
  await assert.rejects(cniAdd(network(["one", "two", "fails", "three"]), attachment), (error: unknown) => {
    assert.ok(error instanceof MoatError);
    assert.equal(error.code, "MOAT_CNI_PLUGIN");
    assert.match(error.message, /^CNI network t \(.*t\.conflist\): plugin fails \(plugins\[2\]\) ADD for abc: no room: range full \(CNI error 11\)$/);
    return true;
  });
  assert.deepEqual((await calls()).map((call) => `${call.command} ${call.type}`), ["ADD one", "ADD two", "ADD fails", "DEL fails", "DEL two", "DEL one"]);
});

test("a plugin missing from the CNI path is named, and what was added before it is deleted", async (t) => {
  const { network, attachment, calls } = await fixture(t);
  await assert.rejects(cniAdd(network(["one", "nowhere"]), attachment), (error: unknown) => error instanceof MoatError && error.code === "MOAT_CNI_PLUGIN_MISSING" && /plugin nowhere \(plugins\[1\]\) ADD for abc: no executable nowhere in /.test(error.message));
  assert.deepEqual((await calls()).map((call) => `${call.command} ${call.type}`), ["ADD one", "DEL one"]);
});

test("DEL runs every plugin even when one fails, and reports the failure", async (t) => {
  const { network, attachment, calls } = await fixture(t);
  await assert.rejects(cniDel(network(["one", "fails-del", "two"]), attachment, undefined), (error: unknown) => error instanceof MoatError && error.code === "MOAT_CNI_PLUGIN" && /plugin fails-del \(plugins\[1\]\) DEL for abc: cannot \(exit status 3\)/.test(error.message));
  assert.deepEqual((await calls()).map((call) => `${call.command} ${call.type}`), ["DEL two", "DEL fails-del", "DEL one"]);
});

test("a result that is not one is refused naming the plugin, and undone", async (t) => {
  const { network, attachment, calls } = await fixture(t);
  const dir = attachment.cniPath[1] ?? "";
  await writeFile(join(dir, "garbage"), "#!/bin/sh\ncat >/dev/null\necho '[1,2]'\n");
  await chmod(join(dir, "garbage"), 0o755);
  await assert.rejects(cniAdd(network(["one", "garbage"]), attachment), (error: unknown) => error instanceof MoatError && error.code === "MOAT_CNI_RESULT" && /plugin garbage \(plugins\[1\]\) ADD for abc: printed a result that is not a JSON object/.test(error.message));
  assert.deepEqual((await calls()).map((call) => `${call.command} ${call.type}`), ["ADD one", "DEL one"], "garbage's DEL printed nothing and was not logged; one was deleted");
});
