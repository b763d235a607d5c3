/**
 * Decoder for QEMU `-netdev stream` / passt / libkrun unixstream framing: each Ethernet
 * frame is preceded by its length as a 4-byte big-endian integer. Pure: no I/O.
 *
 * A frame that lies whole inside a chunk is passed on as a view of it (no copy); a frame split
 * across chunks is assembled once into a buffer of its exact size.
 */
export class FrameDecoder {
  private readonly maxFrameBytes: number;
  /** The frame being assembled across chunks, and how much of it has arrived. */
  private partial: Buffer | undefined;
  private partialFill = 0;
  /** Length-prefix bytes split across chunks. */
  private readonly header = Buffer.alloc(4);
  private headerFill = 0;

  constructor(maxFrameBytes: number) {
    this.maxFrameBytes = maxFrameBytes;
  }

  /**
   * Feeds bytes; calls `onFrame` for each complete frame (a view valid only during the call).
   * Returns an error message for a malformed length; the stream cannot be resynchronised after that.
   */
  push(chunk: Buffer, onFrame: (frame: Buffer) => void): string | undefined {
    let off = 0;
    const end = chunk.length;
    while (off < end) {
      const partial = this.partial;
      if (partial) {
        const n = Math.min(partial.length - this.partialFill, end - off);
        chunk.copy(partial, this.partialFill, off, off + n);
        this.partialFill += n;
        off += n;
        if (this.partialFill < partial.length) break;
        this.partial = undefined;
        this.partialFill = 0;
        onFrame(partial);
        continue;
      }
      let len: number;
      if (this.headerFill > 0 || end - off < 4) {
        const n = Math.min(4 - this.headerFill, end - off);
        chunk.copy(this.header, this.headerFill, off, off + n);
        this.headerFill += n;
        off += n;
        if (this.headerFill < 4) break;
        this.headerFill = 0;
        len = this.header.readUInt32BE(0);
      } else {
        len = chunk.readUInt32BE(off);
        off += 4;
      }
      if (len === 0 || len > this.maxFrameBytes) {
        return `malformed frame length ${len} (allowed 1..${this.maxFrameBytes})`;
      }
      if (end - off >= len) {
        onFrame(chunk.subarray(off, off + len));
        off += len;
      } else {
        this.partial = Buffer.allocUnsafe(len);
        this.partialFill = 0;
      }
    }
    return undefined;
  }

  get bufferedBytes(): number {
    return this.partialFill + this.headerFill;
  }
}

export function encodeFrameLength(length: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(length, 0);
  return b;
}
