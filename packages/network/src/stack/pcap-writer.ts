import { createWriteStream, type WriteStream } from "node:fs";

/** Classic libpcap file (LINKTYPE_ETHERNET) of the frame stream, both directions. */
export class PcapWriter {
  private readonly out: WriteStream;
  private readonly snaplen: number;

  constructor(path: string, snaplen = 65535) {
    this.snaplen = snaplen;
    this.out = createWriteStream(path);
    const h = Buffer.alloc(24);
    h.writeUInt32LE(0xa1b2c3d4, 0);
    h.writeUInt16LE(2, 4);
    h.writeUInt16LE(4, 6);
    h.writeUInt32LE(snaplen, 16);
    h.writeUInt32LE(1, 20);
    this.out.write(h);
  }

  write(frame: Uint8Array): void {
    // Microseconds, as the classic format records them (Date.now() would round every gap to a millisecond).
    const us = Math.round((performance.timeOrigin + performance.now()) * 1000);
    const caplen = Math.min(frame.length, this.snaplen);
    const h = Buffer.alloc(16);
    h.writeUInt32LE(Math.floor(us / 1e6), 0);
    h.writeUInt32LE(us % 1e6, 4);
    h.writeUInt32LE(caplen, 8);
    h.writeUInt32LE(frame.length, 12);
    this.out.write(h);
    this.out.write(Buffer.from(frame.subarray(0, caplen)));
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.out.end(() => resolve()));
  }
}
