import assert from "node:assert/strict";
import { test } from "node:test";
import { describeVcpuStates, parseRegisters, threadTicks } from "./vcpu-state.js";

// Shortened from QEMU 7.2's `info registers -a` for a 2-vCPU microvm guest: vCPU 0 in 64-bit
// mode in the kernel, vCPU 1 halted in real mode before the guest brought it up.
const REGISTERS = `
CPU#0
RAX=00000000fffedb08 RBX=0000000000000000 RCX=00000000ffffefff RDX=00000000fffedb08
RIP=ffffffff81000e5a RFL=00000246 [---Z-P-] CPL=0 II=0 A20=1 SMM=0 HLT=0
CS =0010 0000000000000000 ffffffff 00af9b00 DPL=0 CS64 [-RA]

CPU#1
EAX=00000000 EBX=00000000 ECX=00000000 EDX=00060fb1
EIP=0000fff0 EFL=00000002 [-------] CPL=0 II=0 A20=1 SMM=0 HLT=1
CS =f000 ffff0000 0000ffff 00009b00
`;

test("registers: RIP or EIP, CPL and HLT of each vCPU", () => {
  assert.deepEqual(parseRegisters(REGISTERS), [
    { index: 0, ip: "ffffffff81000e5a", cpl: 0, halted: false },
    { index: 1, ip: "0000fff0", cpl: 0, halted: true },
  ]);
});

test("registers: a block without the fields is left out, not guessed", () => {
  assert.deepEqual(parseRegisters("CPU#0\nRAX=0\n\nCPU#1\nRIP=1 CPL=3 HLT=0\n"), [{ index: 1, ip: "1", cpl: 3, halted: false }]);
  assert.deepEqual(parseRegisters("garbage"), []);
  assert.deepEqual(parseRegisters(""), []);
});

test("description: state, mode, address and host CPU use", () => {
  const vcpus = [
    { index: 0, ip: "ffffffff81000e5a", cpl: 0, halted: true },
    { index: 1, ip: "7f00", cpl: 3, halted: false },
  ];
  assert.equal(
    describeVcpuStates(vcpus, new Map([[0, 0], [1, 98]])),
    "vCPU 0 halted in the kernel at ffffffff81000e5a, 0% of a host CPU; vCPU 1 running in user space at 7f00, 98% of a host CPU",
  );
  assert.equal(describeVcpuStates([vcpus[0]!], new Map()), "vCPU 0 halted in the kernel at ffffffff81000e5a");
});

test("thread CPU time: user plus system ticks, whatever the thread's name holds", () => {
  const stat = "1512 (CPU 0/TCG) S 1 1509 1509 0 -1 138412224 22432 0 5 0 1592 140 0 0 20 0 5 0 1856964";
  assert.equal(threadTicks(stat), 1732);
  assert.equal(threadTicks("7 (a) b) (c) R 1 1 1 0 -1 0 0 0 0 0 10 5 0 0"), 15);
  assert.equal(threadTicks("truncated"), undefined);
});
