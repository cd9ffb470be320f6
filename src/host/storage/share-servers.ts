// The host processes that serve a sandbox's shares, whatever the share kind: none for 9p
// (QEMU serves it itself), one virtiofsd per share for virtio-fs. The sandbox layer starts
// them before QEMU, stops them after it, and kills them on any failure.
import type { Share, SharedFs } from "../hypervisor/index.js";
import { checkVirtiofsd, Virtiofsd, type VirtioFsCache } from "./virtiofsd.js";

export interface ShareServerOptions {
  sharedFs: SharedFs;
  shares: Share[];
  /** The virtiofsd binary and cache mode (used for virtio-fs). */
  virtiofsd: { binary: string; cache: VirtioFsCache };
  stateDir: string;
  socketDir: string;
  /** Names the sandbox in errors. */
  where: string;
}

export class ShareServers {
  private constructor(
    /** The kind of share these serve: for an adopted sandbox, the kind it was started with. */
    readonly sharedFs: SharedFs,
    private readonly daemons: Virtiofsd[],
  ) {}

  /** Fails with one clear error if the share kind needs a program that is not there. */
  static check(sharedFs: SharedFs, virtiofsdBinary: string, where: string): void {
    if (sharedFs === "virtio-fs") checkVirtiofsd(virtiofsdBinary, where);
  }

  /** Starts every server (in parallel); if any fails, the others are killed and its error thrown. */
  static async start(options: ShareServerOptions): Promise<ShareServers> {
    if (options.sharedFs === "virtio-9p") return new ShareServers("virtio-9p", []);
    const started = await Promise.allSettled(
      options.shares.map((share) =>
        Virtiofsd.start({ ...options.virtiofsd, tag: share.tag, source: share.hostPath, readOnly: share.readOnly, stateDir: options.stateDir, socketDir: options.socketDir }, options.where),
      ),
    );
    const daemons = started.flatMap((result) => (result.status === "fulfilled" ? [result.value] : []));
    const failed = started.find((result): result is PromiseRejectedResult => result.status === "rejected");
    if (failed) {
      await new ShareServers(options.sharedFs, daemons).kill();
      throw failed.reason;
    }
    return new ShareServers(options.sharedFs, daemons);
  }

  /** The servers a previous moatd started for the sandbox in `paths.stateDir` and left running. */
  static async adopt(paths: { stateDir: string; socketDir: string }): Promise<ShareServers> {
    const sharedFs = (await Virtiofsd.tagsIn(paths.stateDir)).length > 0 ? "virtio-fs" : "virtio-9p";
    return new ShareServers(sharedFs, await Virtiofsd.adopt(paths));
  }

  get pids(): number[] {
    return this.daemons.map((daemon) => daemon.pid);
  }

  /** After the VM has stopped: each server gets `graceMs` to exit by itself, then is killed. */
  async stop(graceMs: number): Promise<void> {
    await Promise.all(this.daemons.map((daemon) => daemon.stop(graceMs)));
  }

  async kill(): Promise<void> {
    await Promise.all(this.daemons.map((daemon) => daemon.kill()));
  }
}
