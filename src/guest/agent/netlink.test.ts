import assert from "node:assert/strict";
import { test } from "node:test";
import { addressAdd, ipBytes, linkSet, macBytes, routeAdd } from "./netlink.js";

test("IPv6 addresses in every text form become their 16 bytes", () => {
  assert.equal(ipBytes("fd00:5::2").bytes.toString("hex"), "fd000005000000000000000000000002");
  assert.equal(ipBytes("::").bytes.toString("hex"), "0".repeat(32));
  assert.equal(ipBytes("fe80::1:2").bytes.toString("hex"), "fe800000000000000000000000010002");
  assert.equal(ipBytes("::ffff:198.18.0.1").bytes.toString("hex"), "00000000000000000000ffffc6120001");
  assert.equal(ipBytes("1:2:3:4:5:6:7:8").bytes.toString("hex"), "00010002000300040005000600070008");
  assert.deepEqual(ipBytes("198.18.0.2"), { family: 2, bytes: Buffer.from([198, 18, 0, 2]) });
  assert.throws(() => ipBytes("198.18.0"), /not an IP address/);
  assert.throws(() => macBytes("02:00:00:00:00"), /not a MAC address/);
});

/** The attributes after a request's two headers, as [type, payload hex]. */
function attributes(message: Buffer, bodyBytes: number): Array<[number, string]> {
  assert.equal(message.readUInt32LE(0), message.length, "the header's length is the message's");
  const found: Array<[number, string]> = [];
  for (let offset = 16 + bodyBytes; offset < message.length; ) {
    const length = message.readUInt16LE(offset);
    found.push([message.readUInt16LE(offset + 2), message.subarray(offset + 4, offset + length).toString("hex")]);
    offset += (length + 3) & ~3;
  }
  return found;
}

test("a link's name, MAC and MTU are IFLA_IFNAME, IFLA_ADDRESS and IFLA_MTU; every request asks for an ack", () => {
  const message = linkSet(3, { name: "eth0", mac: "02:11:22:33:44:55", mtu: 1400 });
  assert.equal(message.readUInt16LE(4), 16, "RTM_NEWLINK");
  assert.equal(message.readUInt16LE(6) & 0x5, 0x5, "NLM_F_REQUEST | NLM_F_ACK");
  assert.equal(message.readInt32LE(16 + 4), 3, "ifi_index");
  assert.deepEqual(attributes(message, 16), [[3, "6574683000"], [1, "021122334455"], [4, "78050000"]]);
});

test("an IPv6 address is added without duplicate detection; a route carries its MTU as a nested metric", () => {
  const address = addressAdd(3, "fd00:5::2", 64);
  assert.equal(address.readUInt8(16), 10, "AF_INET6");
  assert.equal(address.readUInt8(17), 64);
  assert.deepEqual(attributes(address, 8).map(([type]) => type), [2, 1, 8], "IFA_LOCAL, IFA_ADDRESS, IFA_FLAGS");
  const route = routeAdd({ destination: "default", family: 4, gateway: "198.18.0.1", outputIndex: 3, source: "198.18.0.2", scope: 0, mtu: 1300, metric: 7 });
  assert.equal(route.readUInt8(17), 0, "a default route's prefix length is 0");
  assert.deepEqual(attributes(route, 12), [[4, "03000000"], [5, "c6120001"], [7, "c6120002"], [6, "07000000"], [8, "080002001405" + "0000"]]);
  assert.throws(() => routeAdd({ destination: "default", family: 4, gateway: "fd00::1", outputIndex: 3, source: "", scope: 0, mtu: 0, metric: 0 }), /not of the route's family/);
});
