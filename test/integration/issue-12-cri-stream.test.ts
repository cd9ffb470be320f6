// Issue 12 item 4: CRI's streaming calls, through containerd's stream server on 127.0.0.1
// with the suite's WebSocket client (harness/cri-stream.ts), against `runc` (the baseline)
// and `kata` (moat): Exec with a TTY and two resizes and an exit code, Attach to a running
// container's stdin and stdout, PortForward to a port in the pod: two at once, and one to a
// port where nothing listens, which ends with an error, not a hang.
//
// containerd 1.6 serves PortForward by dialling localhost:PORT inside the pod's network
// namespace on the host (pkg/cri/server/sandbox_portforward_linux.go); with moat the pod's
// programs are in the VM, and moat's port-forward relay carries those connections to the
// guest's loopback (docs/networking.md, "Port forwarding"). While the pod runs, its namespace
// holds moat's REDIRECT rule; afterwards no relay process is left (the census).
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { test } from "node:test";
import { ChannelSession, PortForwardSession, STDIN, STDOUT } from "./harness/cri-stream.js";
import { criNodeForTestFile } from "./harness/cri.js";

const node = criNodeForTestFile();

/** Sends an HTTP request through `forward` and waits for the answer (or an error, or the end). */
async function fetchThrough(forward: PortForwardSession): Promise<void> {
  forward.write("GET / HTTP/1.0\r\n\r\n");
  await forward.until(() => forward.data().includes("served-by-server") || forward.error() !== "");
}

/** The pod's network namespace on the host: the one that appeared under /run/netns with it. */
function podNetns(before: string[]): string {
  const added = readdirSync("/run/netns").filter((name) => !before.includes(name));
  assert.equal(added.length, 1, `one new network namespace: ${added.join(", ")}`);
  return added[0]!; // one, checked just above
}

/** Sends `stty size` until the terminal reports ROWS COLS (the resize and stdin channels are served apart, so the first may overtake the second). */
async function sizeShows(session: ChannelSession, rows: number, cols: number): Promise<boolean> {
  const wanted = new RegExp(`^${rows} ${cols}\\r?$`, "m");
  for (let attempt = 0; attempt < 20; attempt++) {
    session.send(STDIN, "stty size\n");
    if (await session.until(() => wanted.test(session.text(STDOUT)), 3_000)) return true;
  }
  return false;
}

for (const handler of ["runc", "kata"]) {
  test(`streaming Exec with a TTY and resizes, and Attach (${handler})`, async () => {
    const pod = await node.runPod(handler, { name: `stream-${handler}` });
    try {
      const echo = await node.startContainer(pod, { name: "echo", command: ["sh", "-c", 'while read line; do echo "got $line"; done'], stdin: true });

      const { url } = await node.cri.runtime.exec({ containerId: echo, cmd: ["sh"], tty: true, stdin: true, stdout: true, stderr: false });
      assert.match(url, new RegExp(`^http://127\\.0\\.0\\.1:${node.streamPort}/exec/`), "a URL on the stream server on loopback");
      const shell = await ChannelSession.open(url);
      try {
        shell.resize(100, 30);
        assert.ok(await sizeShows(shell, 30, 100), `the first size reached the terminal:\n${shell.text(STDOUT)}`);
        shell.resize(132, 43);
        assert.ok(await sizeShows(shell, 43, 132), `the resize reached the terminal:\n${shell.text(STDOUT)}`);
        shell.send(STDIN, "tty; exit 3\n");
        await shell.closed;
        assert.match(shell.text(STDOUT), /\/dev\/pts\/\d+/, "a terminal");
        assert.equal(shell.exitCode(), 3, `the exit code on the error channel: ${shell.text(3)}`);
      } finally {
        shell.close();
      }

      const attach = await node.cri.runtime.attach({ containerId: echo, stdin: true, stdout: true, stderr: true });
      const attached = await ChannelSession.open(attach.url);
      try {
        attached.send(STDIN, "hello\n");
        assert.ok(await attached.until(() => attached.text(STDOUT).includes("got hello")), `attached to the container's stdout: ${JSON.stringify(attached.text(STDOUT))}`);
      } finally {
        attached.close();
      }
    } finally {
      await node.removePod(pod.id);
    }
    await node.assertNothingLeft();
  });

  test(`PortForward to a port in the pod, two at once, and to a port where nothing listens (${handler})`, async () => {
    const netnsBefore = readdirSync("/run/netns");
    const pod = await node.runPod(handler, { name: `forward-${handler}` });
    try {
      const server = await node.startContainer(pod, { name: "server", command: ["sh", "-c", "mkdir -p /www && echo served-by-server > /www/index.html && exec httpd -f -p 8080 -h /www"] });
      const ready = await node.exec(server, ["sh", "-c", "until wget -q -O /dev/null http://127.0.0.1:8080/; do sleep 0.2; done"]);
      assert.equal(ready.exitCode, 0, ready.stderr);
      if (handler === "kata") {
        const nat = execFileSync("ip", ["netns", "exec", podNetns(netnsBefore), "iptables-save", "-t", "nat"], { encoding: "utf8" });
        assert.match(nat, /-A OUTPUT -d 127\.0\.0\.1\/32 -o lo -p tcp -m comment --comment "moat port-forward" -j REDIRECT --to-ports \d+/, "moat's rule in the pod's namespace");
      }
      const forwards = await Promise.all([0, 1].map(async () => (await PortForwardSession.open((await node.cri.runtime.portForward({ podSandboxId: pod.id, port: [8080] })).url, 8080))));
      try {
        await Promise.all(forwards.map(fetchThrough));
        for (const forward of forwards) {
          assert.equal(forward.error(), "", "the server's error channel");
          assert.match(forward.data(), /^HTTP\/1\.[01] 200/, "httpd's answer through the forward");
          assert.match(forward.data(), /served-by-server/);
        }
      } finally {
        for (const forward of forwards) forward.close();
      }
      // Nothing listens on 8099: containerd's dial (runc) or the guest's (moat) fails, and the
      // client hears it on the error channel instead of waiting.
      const refused = await PortForwardSession.open((await node.cri.runtime.portForward({ podSandboxId: pod.id, port: [8099] })).url, 8099);
      try {
        refused.write("GET / HTTP/1.0\r\n\r\n");
        assert.ok(await refused.until(() => refused.error() !== ""), `an error for port 8099 (data: ${JSON.stringify(refused.data())})`);
        assert.equal(refused.data(), "", "no bytes from a port where nothing listens");
      } finally {
        refused.close();
      }
    } finally {
      await node.removePod(pod.id);
    }
    await node.assertNothingLeft();
  });
}
