import assert from "node:assert/strict";
import { test } from "node:test";
import { moatdUnit } from "./systemd-unit.js";

test("the moatd unit runs the daemon for good and leaves the sandboxes alone when it stops", () => {
  const unit = moatdUnit({ node: "/usr/bin/node", moatd: "/opt/moat/dist/bundle/moatd.mjs", stateRoot: "/run/moat", config: "/etc/moat/my config.toml" });
  assert.match(unit, /^ExecStart=\/usr\/bin\/node \/opt\/moat\/dist\/bundle\/moatd.mjs --root \/run\/moat --idle-exit-seconds 0 --config "\/etc\/moat\/my config.toml"$/m);
  assert.match(unit, /^KillMode=process$/m, "QEMU processes are in the unit's cgroup: they must outlive a daemon restart");
  assert.match(unit, /^Restart=on-failure$/m);
  assert.match(unit, /^WantedBy=multi-user.target$/m);
  assert.doesNotMatch(moatdUnit({ node: "/usr/bin/node", moatd: "/m/dist/bundle/moatd.mjs", stateRoot: "/run/moat", config: undefined }), /--config/);
});
