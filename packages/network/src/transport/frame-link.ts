/** The VM side of the stack as the output path sees it: a frame stream toward the guest. */
export interface FrameLink {
  /** Queues one Ethernet frame to the VM. Returns false if it was dropped. */
  send(frame: Uint8Array): boolean;
  /** Like send(), for a buffer whose first 4 bytes already hold the big-endian frame length. */
  sendPrefixed(prefixed: Uint8Array): boolean;
  readonly connected: boolean;
  /** Bytes queued toward the VM and not yet written to the socket. */
  readonly pendingWriteBytes: number;
}
