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
    const t = Date.now();
    const caplen = Math.min(frame.length, this.snaplen);
    const h = Buffer.alloc(16);
    h.writeUInt32LE(Math.floor(t / 1000), 0);
    h.writeUInt32LE((t % 1000) * 1000, 4);
    h.writeUInt32LE(caplen, 8);
    h.writeUInt32LE(frame.length, 12);
    this.out.write(h);
    this.out.write(Buffer.from(frame.subarray(0, caplen)));
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.out.end(() => resolve()));
  }
}
