// The system calls the agent needs and Node lacks (mount, umount, the RNG reseed, the clock,
// the hostname, rtnetlink), from the moat-sys addon (src/guest/sys/moat-sys.c), loaded at first use:
// in a template's VM that is its warm-up, so clones have it loaded already.
import { MoatError } from "../../shared/errors.js";
import { Code } from "../../shared/ttrpc/index.js";

/** Where image/rootfs/build.sh installs the addon. */
const ADDON_PATH = "/moat/moat-sys.node";

export interface MoatSys {
  /** mount(2); throws an Error whose code is the errno name. */
  mount(source: string | null, target: string, fstype: string | null, flags: number, data: string | null): void;
  umount(target: string): void;
  reseedRandom(entropy: Uint8Array): void;
  setClock(seconds: number, nanoseconds: number): void;
  setHostname(name: string): void;
  /** Sends one rtnetlink request (netlink.ts) and waits for its ack; throws with the errno name as code. */
  netlink(message: Buffer): void;
  readonly MS_RDONLY: number;
  readonly MS_REMOUNT: number;
  readonly MS_BIND: number;
}

let loaded: MoatSys | undefined;

export function sys(): MoatSys {
  if (!loaded) {
    const module = { exports: {} };
    try {
      process.dlopen(module, ADDON_PATH);
    } catch (error) {
      throw new MoatError("MOAT_GUEST_SYS", `guest: cannot load ${ADDON_PATH}: ${error instanceof Error ? error.message : String(error)}`, { status: Code.INTERNAL });
    }
    loaded = module.exports as MoatSys; // the addon's exports, as moat-sys.c defines them
  }
  return loaded;
}
