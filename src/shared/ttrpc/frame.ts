// ttrpc message frames (containerd/ttrpc PROTOCOL.md): a 10-byte big-endian header
// (u32 data length, u32 stream id, u8 type, u8 flags) and then the data.
//
// FrameDecoder turns any split or coalescing of bytes into whole frames. It holds at most one
// partial frame (≤ MAX_DATA_BYTES + header), so a peer cannot make it grow without bound, and
// it rejects what the protocol forbids with a FrameError; it never throws anything else.

export const HEADER_BYTES = 10;
/** The protocol's cap on one frame's data: 4 MiB. */
export const MAX_DATA_BYTES = 4 << 20;

export enum FrameType {
  REQUEST = 0x01,
  RESPONSE = 0x02,
  DATA = 0x03,
}

/** Request and data flags. A request with no flags is unary. */
export const FLAG_REMOTE_CLOSED = 0x01;
export const FLAG_REMOTE_OPEN = 0x02;

export interface Frame {
  streamId: number;
  type: FrameType;
  flags: number;
  data: Buffer;
}

export class FrameError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "FrameError";
  }
}

export function encodeFrame(frame: Frame): Buffer {
  if (frame.data.length > MAX_DATA_BYTES) {
    throw new FrameError(`frame data of ${frame.data.length} bytes exceeds the ${MAX_DATA_BYTES}-byte limit`);
  }
  const header = Buffer.allocUnsafe(HEADER_BYTES);
  header.writeUInt32BE(frame.data.length, 0);
  header.writeUInt32BE(frame.streamId >>> 0, 4);
  header.writeUInt8(frame.type, 8);
  header.writeUInt8(frame.flags, 9);
  return Buffer.concat([header, frame.data]);
}

interface PendingHeader {
  length: number;
  streamId: number;
  type: FrameType;
  flags: number;
}

export class FrameDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private header: PendingHeader | undefined;

  /** Bytes held for a frame not yet complete. */
  get bufferedBytes(): number {
    return this.buffered;
  }

  /** Feeds bytes; returns the frames they complete. Throws FrameError on a protocol violation. */
  push(chunk: Buffer): Frame[] {
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
    const frames: Frame[] = [];
    for (;;) {
      if (this.header === undefined) {
        if (this.buffered < HEADER_BYTES) break;
        this.header = parseHeader(this.take(HEADER_BYTES));
      }
      if (this.buffered < this.header.length) break;
      const data = this.take(this.header.length);
      frames.push({ streamId: this.header.streamId, type: this.header.type, flags: this.header.flags, data });
      this.header = undefined;
    }
    return frames;
  }

  private take(count: number): Buffer {
    // One chunk is used as it is; several (or none, for an empty frame) are joined.
    const joined = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.buffered); // length checked
    const taken = Buffer.from(joined.subarray(0, count)); // a copy: the caller keeps it past later pushes
    const rest = joined.subarray(count);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.buffered = rest.length;
    return taken;
  }
}

function parseHeader(bytes: Buffer): PendingHeader {
  const length = bytes.readUInt32BE(0);
  const streamId = bytes.readUInt32BE(4);
  const type = bytes.readUInt8(8);
  const flags = bytes.readUInt8(9);
  if (length > MAX_DATA_BYTES) {
    throw new FrameError(`frame on stream ${streamId} announces ${length} bytes, over the ${MAX_DATA_BYTES}-byte limit`);
  }
  if (type !== FrameType.REQUEST && type !== FrameType.RESPONSE && type !== FrameType.DATA) {
    throw new FrameError(`frame on stream ${streamId} has unknown type 0x${type.toString(16).padStart(2, "0")}`);
  }
  if (streamId === 0) {
    throw new FrameError("frame uses stream id 0, which is reserved");
  }
  return { length, streamId, type, flags };
}
