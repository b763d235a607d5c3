/**
 * The VM side of the stack as the output path sees it: a frame stream toward the guest. Frames
 * are built in place: reserve() a buffer, fill it, commit() it.
 */
export interface FrameLink {
  /** A buffer for one frame of `length` bytes; valid until the next reserve(). */
  reserve(length: number): Buffer;
  /** Queues the frame the last reserve() returned. Returns false if it was dropped. */
  commit(frame: Buffer): boolean;
  /** Queues one prebuilt frame (copied). Returns false if it was dropped. */
  send(frame: Uint8Array): boolean;
  readonly connected: boolean;
  /** Bytes queued toward the VM and not yet written to the socket. */
  readonly pendingWriteBytes: number;
}
