/**
 * Decoder for QEMU `-netdev stream` / passt / libkrun unixstream framing: each Ethernet
 * frame is preceded by its length as a 4-byte big-endian integer. Pure: no I/O.
 */
export class FrameDecoder {
  private pending: Buffer | undefined;
  private readonly maxFrameBytes: number;

  constructor(maxFrameBytes: number) {
    this.maxFrameBytes = maxFrameBytes;
  }

  /**
   * Feeds bytes; calls `onFrame` for each complete frame (a view valid only during the call).
   * Returns an error message for a malformed length; the stream cannot be resynchronised after that.
   */
  push(chunk: Buffer, onFrame: (frame: Buffer) => void): string | undefined {
    let buf = chunk;
    if (this.pending) {
      buf = Buffer.concat([this.pending, chunk]);
      this.pending = undefined;
    }
    let off = 0;
    while (buf.length - off >= 4) {
      const len = buf.readUInt32BE(off);
      if (len === 0 || len > this.maxFrameBytes) {
        return `malformed frame length ${len} (allowed 1..${this.maxFrameBytes})`;
      }
      if (buf.length - off - 4 < len) break;
      onFrame(buf.subarray(off + 4, off + 4 + len));
      off += 4 + len;
    }
    if (off < buf.length) this.pending = Buffer.from(buf.subarray(off));
    return undefined;
  }

  get bufferedBytes(): number {
    return this.pending?.length ?? 0;
  }
}

export function encodeFrameLength(length: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(length, 0);
  return b;
}
