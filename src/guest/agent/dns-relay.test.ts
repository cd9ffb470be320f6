import assert from "node:assert/strict";
import { createSocket } from "node:dgram";
import { once } from "node:events";
import { connect } from "node:net";
import { after, test } from "node:test";
import { DnsRelay, MAX_OUTSTANDING } from "./dns-relay.js";

// A port of the test's own on 127.0.0.1 (the agent's is 127.0.0.11:53 in the guest).
const port = 20_000 + Math.floor(Math.random() * 20_000);
const relay = new DnsRelay("127.0.0.1", port);
const never = new AbortController().signal;
after(() => relay.close());

function query(id: number, size = 30): Buffer {
  const message = Buffer.alloc(size, 7);
  message.writeUInt16BE(id, 0);
  return message;
}

test("a UDP query goes to the host with an id of the agent's; the answer comes back with the client's id", async () => {
  const client = createSocket("udp4");
  client.send(query(0xbeef), port, "127.0.0.1");
  const [relayed] = await relay.read(16, never);
  assert.ok(relayed);
  assert.equal(relayed.length, 30);
  const answer = Buffer.from(relayed);
  answer[2] = 0x81; // whatever the resolver says; only the id matters here
  relay.write([answer]);
  const [got] = (await once(client, "message")) as [Buffer];
  assert.equal(got.readUInt16BE(0), 0xbeef);
  assert.equal(got[2], 0x81);
  client.close();
});

test("a TCP query (u16 length, message) is answered the same way", async () => {
  const client = connect(port, "127.0.0.1");
  await once(client, "connect");
  const message = query(0x1234, 40);
  const header = Buffer.alloc(2);
  header.writeUInt16BE(message.length, 0);
  client.write(Buffer.concat([header.subarray(0, 1)]));
  client.write(Buffer.concat([header.subarray(1), message]));
  const [relayed] = await relay.read(16, never);
  assert.ok(relayed);
  relay.write([relayed]);
  const [got] = (await once(client, "data")) as [Buffer];
  assert.equal(got.readUInt16BE(0), 40);
  assert.equal(got.readUInt16BE(2), 0x1234);
  client.destroy();
});

test("queries out of bounds are dropped, and no more than MAX_OUTSTANDING wait; answers for no query are dropped", async () => {
  const client = createSocket("udp4");
  client.send(Buffer.alloc(5), port, "127.0.0.1"); // shorter than a DNS header
  client.send(query(1, 600), port, "127.0.0.1"); // larger than 512 bytes
  for (let id = 0; id < MAX_OUTSTANDING + 10; id++) client.send(query(id), port, "127.0.0.1");
  // Wait until the datagrams are in: a read returns once there are any; take all in a few reads.
  const taken: Buffer[] = [];
  const done = new AbortController();
  setTimeout(() => done.abort(), 1000);
  while (!done.signal.aborted) taken.push(...(await relay.read(MAX_OUTSTANDING, done.signal)));
  assert.ok(taken.length <= MAX_OUTSTANDING, `${taken.length} relayed`);
  assert.ok(taken.every((message) => message.length === 30));
  relay.write([query(0xffff)]); // an id nobody asked with: nothing happens
  assert.throws(() => relay.write(Array.from({ length: MAX_OUTSTANDING + 1 }, () => query(1))), /at most 64 answers/);
  client.close();
});
