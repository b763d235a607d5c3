import type { PcapWriter } from "../stack/pcap-writer.js";
import type { FrameLink } from "./frame-link.js";

/**
 * Wraps the frame transport and records every frame crossing it, both directions, in a pcap
 * file. Frames toward the VM are recorded even when the transport then drops them.
 */
export class PcapTap implements FrameLink {
  private closed = false;

  constructor(
    private readonly inner: FrameLink,
    private readonly writer: PcapWriter,
  ) {}

  /** Wraps the transport's frame callback: records each frame from the VM, then passes it on. */
  inbound(onFrame: (frame: Buffer) => void): (frame: Buffer) => void {
    return (frame) => {
      if (!this.closed) this.writer.write(frame);
      onFrame(frame);
    };
  }

  reserve(length: number): Buffer {
    return this.inner.reserve(length);
  }

  commit(frame: Buffer): boolean {
    if (!this.closed) this.writer.write(frame);
    return this.inner.commit(frame);
  }

  send(frame: Uint8Array): boolean {
    if (!this.closed) this.writer.write(frame);
    return this.inner.send(frame);
  }

  get connected(): boolean {
    return this.inner.connected;
  }

  get pendingWriteBytes(): number {
    return this.inner.pendingWriteBytes;
  }

  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    return this.writer.close();
  }
}
