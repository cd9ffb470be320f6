// A new network namespace that a sandbox owns: the one its stand-in (the host process that
// stands for the container) was started in, when the spec asks for a new namespace without a
// path. Docker's libnetwork-setkey prestart hook moves the container's veth into the namespace
// of the pid it is given, so that namespace must be the stand-in's, must never be the host's,
// and must outlive the stand-in until the sandbox is deleted: it is pinned by a bind mount
// beside the sandbox's state directory, `<state root>/<id>.netns` (as `ip netns add` pins one
// in /run/netns), and unpinned at delete, after moat's taps and qdiscs in it are gone. Beside,
// not in it: a VM taken from the warm pool is its directory renamed onto the sandbox's, which
// must be empty then.
import { execFile } from "node:child_process";
import { stat, rm, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import { promisify } from "node:util";
import { MoatError } from "../../shared/errors.js";
import { tracer } from "../../shared/trace.js";
import { Code } from "../../shared/ttrpc/index.js";

const trace = tracer("network");
const run = promisify(execFile);
/** Where the namespace of the sandbox whose state directory is `stateDir` is pinned. */
export function netnsPin(stateDir: string): string {
  return `${stateDir}.netns`;
}

/**
 * The network namespace file of stand-in `pid`, refused when it is moatd's own (the host's):
 * hooks, CNI plugins and taps would act on it. `why` says why it must be another.
 */
export async function standInNetns(pid: number, where: string, why: string): Promise<string> {
  const source = `/proc/${pid}/ns/net`;
  const [theirs, ours] = await Promise.all([
    stat(source).catch((error: unknown) => {
      throw new MoatError("MOAT_NETNS_STANDIN", `${where}: stand-in pid ${pid}: its network namespace cannot be found (${source})`, { cause: error, hint: "the stand-in exited before moatd took its namespace", status: Code.FAILED_PRECONDITION });
    }),
    stat("/proc/self/ns/net"),
  ]);
  if (theirs.ino === ours.ino && theirs.dev === ours.dev) {
    throw new MoatError("MOAT_NETNS_STANDIN", `${where}: stand-in pid ${pid} is in moatd's own network namespace; ${why}`, { hint: "moat create and moat run start the stand-in in a new network namespace; a stand-in started another way cannot be given one", status: Code.FAILED_PRECONDITION });
  }
  return source;
}

/**
 * Pins the network namespace of process `pid` at netnsPin(stateDir) and returns that path.
 * Refuses a process in moatd's own namespace (the host's): hooks and taps would act on it.
 */
export async function pinNetns(stateDir: string, pid: number, where: string): Promise<string> {
  const source = await standInNetns(pid, where, "the spec asks for a new one");
  const pin = netnsPin(stateDir);
  await writeFile(pin, "", { mode: 0o400 });
  try {
    await run("mount", ["--bind", source, pin]);
  } catch (error) {
    await rm(pin, { force: true });
    throw new MoatError("MOAT_NETNS_PIN", `${where}: cannot pin the network namespace of stand-in pid ${pid} at ${pin}`, { cause: (error as { stderr?: string }).stderr?.trim() || error, status: Code.INTERNAL }); // execFile's error carries the program's stderr
  }
  trace(where, `pinned the network namespace of pid ${pid} at ${pin}`);
  return pin;
}

/** The pinned namespace of the sandbox whose state directory is `stateDir`, if it has one. */
export async function pinnedNetns(stateDir: string): Promise<string | undefined> {
  const pin = netnsPin(stateDir);
  const there = await stat(pin).catch(() => undefined);
  // A namespace file is on nsfs; the empty file under it is not: only a pinned one counts.
  return there && there.dev !== (await stat(dirname(pin))).dev ? pin : undefined;
}

/** Unpins what pinNetns pinned for `stateDir`; one that is not there counts as unpinned. */
export async function unpinNetns(stateDir: string): Promise<void> {
  const pin = netnsPin(stateDir);
  if (await pinnedNetns(stateDir)) {
    try {
      await run("umount", [pin]);
    } catch (error) {
      throw new MoatError("MOAT_NETNS_PIN", `${pin}: cannot unpin the sandbox's network namespace`, { cause: (error as { stderr?: string }).stderr?.trim() || error, status: Code.INTERNAL }); // execFile's error carries the program's stderr
    }
  }
  await rm(pin, { force: true });
}
