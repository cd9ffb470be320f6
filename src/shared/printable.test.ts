import assert from "node:assert/strict";
import { test } from "node:test";
import { printable, printableTail } from "./printable.js";

/** Every character a terminal or a log reader could take as more than text. */
const DANGEROUS = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;

test("terminal escape sequences lose their ESC and CSI bytes", () => {
  assert.equal(printable("a\u001b[2J\u001b]0;pwned\u0007b", 100), "a?[2J?]0;pwned?b");
  assert.equal(printable("x\u009b31my", 100), "x?31my", "C1 CSI (U+009B) is a control too");
  assert.equal(printable("del\u007f", 100), "del?");
});

test("line breaks become spaces, so a guest cannot forge a line of a log", () => {
  assert.equal(printable("bad\ntime=\"2026\" level=info msg=forged\r\n", 100), 'bad time="2026" level=info msg=forged');
  assert.equal(printable("tab\there", 100), "tab here");
  assert.equal(printable("a\u2028b\u2029c", 100), "a?b?c");
});

test("bidirectional overrides, which reorder what is shown, are replaced", () => {
  assert.equal(printable("file\u202etxt.exe", 100), "file?txt.exe");
  assert.equal(printable("\u2066x\u2069", 100), "?x?");
});

test("text is cut to the bound, with a mark", () => {
  assert.equal(printable("abcdef", 6), "abcdef");
  assert.equal(printable("abcdefg", 6), "abcdef…");
  assert.equal(printable("x".repeat(10_000_000), 1024).length, 1025);
  assert.equal(printable("ab\u{1F600}", 3), "ab…", "a surrogate pair is not split");
});

test("garbage of every code unit comes out bounded and without a control character", () => {
  for (let round = 0; round < 200; round++) {
    const length = Math.floor(Math.random() * 3000);
    const text = String.fromCharCode(...Array.from({ length }, () => Math.floor(Math.random() * 0x10000)));
    const out = printable(text, 256);
    assert.ok(out.length <= 257, `length ${out.length}`);
    assert.ok(!DANGEROUS.test(out), JSON.stringify(out));
  }
});

test("a tail is the last lines, each printable, on one bounded line", () => {
  const log = ["one", "two\u001b[31m", "", "three", "four"].join("\n") + "\n";
  assert.equal(printableTail(log, 3, 100), "two?[31m | three | four");
  assert.equal(printableTail("x".repeat(50_000), 5, 1024).length, 1025);
  assert.equal(printableTail("", 5, 100), "");
});
