// Wire format of the control channel between the host supervisor and the guest init.
//
// One frame:  u32 BE payloadLength | u8 type | u32 BE streamId | payload
//
// Stream 0 is the control stream (READY, PING/PONG, SHUTDOWN, the workload's
// own output and exit). Every EXEC opens a stream chosen by the host (non-zero).
// Data frames (STDIN/STDOUT/STDERR) carry raw bytes; CREDIT carries a u32 BE
// byte count; EOF is empty; every other type carries one UTF-8 JSON object.
// Unknown types are delivered as such so that an older peer can ignore what a
// newer one sends: the version is exchanged in READY.
//
// Portable: Uint8Array/DataView only, shared by the Node host and the QuickJS guest.

import { concatBytes } from "../portable/bytes.js";

export const PROTOCOL_VERSION = 1;
export const HEADER_BYTES = 9;
/** Largest payload a receiver accepts; larger frames are a protocol error. */
export const MAX_PAYLOAD_BYTES = 1024 * 1024;
/** Senders split data into chunks of at most this size. */
export const MAX_DATA_CHUNK_BYTES = 64 * 1024;
/** Bytes a sender may have in flight per stream before it needs CREDIT. */
export const INITIAL_WINDOW_BYTES = 256 * 1024;
export const CONTROL_STREAM = 0;
/** Name of the virtio-serial port (QEMU `virtserialport,name=`) init looks for. */
export const CONTROL_PORT_NAME = "iii.control";

export const FrameType = {
  READY: 0x01,
  PING: 0x02,
  PONG: 0x03,
  LOG: 0x04,
  ERROR: 0x05,
  EXEC: 0x10,
  STARTED: 0x11,
  STDIN: 0x12,
  EOF: 0x13,
  STDOUT: 0x14,
  STDERR: 0x15,
  EXIT: 0x16,
  SIGNAL: 0x17,
  RESIZE: 0x18,
  CREDIT: 0x19,
  SHUTDOWN: 0x20,
  WORKLOAD_STARTED: 0x21,
  WORKLOAD_EXIT: 0x22,
  RESTART_WORKLOAD: 0x23,
} as const;

export type FrameTypeName = keyof typeof FrameType;
export type FrameTypeCode = (typeof FrameType)[FrameTypeName];

const NAME_BY_CODE = new Map<number, FrameTypeName>(
  (Object.entries(FrameType) as [FrameTypeName, number][]).map(([name, code]) => [code, name]),
);

export function frameTypeName(code: number): FrameTypeName | undefined {
  return NAME_BY_CODE.get(code);
}

export interface Frame {
  type: number;
  stream: number;
  payload: Uint8Array;
}

export class ProtocolError extends Error {
  readonly code = "ProtocolViolation";
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "ProtocolError";
  }
}

export function encodeFrame(frame: Frame): Uint8Array {
  const { type, stream, payload } = frame;
  if (!Number.isInteger(type) || type < 0 || type > 0xff) throw new ProtocolError(`frame type out of range: ${type}`);
  if (!Number.isInteger(stream) || stream < 0 || stream > 0xffffffff) {
    throw new ProtocolError(`stream id out of range: ${stream}`);
  }
  if (payload.byteLength > MAX_PAYLOAD_BYTES) {
    throw new ProtocolError(`payload of ${payload.byteLength} bytes exceeds ${MAX_PAYLOAD_BYTES}`);
  }
  const out = new Uint8Array(HEADER_BYTES + payload.byteLength);
  const view = new DataView(out.buffer);
  view.setUint32(0, payload.byteLength, false);
  view.setUint8(4, type);
  view.setUint32(5, stream, false);
  out.set(payload, HEADER_BYTES);
  return out;
}

/**
 * Incremental decoder: feed arbitrary chunks, get whole frames. A payload is a
 * view into the pushed bytes when the frame arrived in one chunk, otherwise one
 * copy; either way it stays valid (pushed chunks are never reused).
 */
export class FrameDecoder {
  private buffered: Uint8Array[] = [];
  private bufferedBytes = 0;
  /** Size of the frame being assembled (header + payload), 0 before its header is read. */
  private needed = 0;

  push(chunk: Uint8Array): Frame[] {
    if (chunk.byteLength > 0) {
      this.buffered.push(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
      this.bufferedBytes += chunk.byteLength;
    }
    const frames: Frame[] = [];
    while (this.bufferedBytes >= HEADER_BYTES) {
      if (this.needed === 0) {
        const length = view(this.peekHeader()).getUint32(0, false);
        if (length > MAX_PAYLOAD_BYTES) {
          throw new ProtocolError(`incoming frame announces ${length} bytes, more than ${MAX_PAYLOAD_BYTES}`);
        }
        this.needed = HEADER_BYTES + length;
      }
      if (this.bufferedBytes < this.needed) break;
      const bytes = this.take(this.needed);
      this.needed = 0;
      const header = view(bytes);
      frames.push({
        type: header.getUint8(4),
        stream: header.getUint32(5, false),
        payload: new Uint8Array(bytes.buffer, bytes.byteOffset + HEADER_BYTES, bytes.length - HEADER_BYTES),
      });
    }
    return frames;
  }

  /** Bytes of an incomplete frame still held. */
  get pendingBytes(): number {
    return this.bufferedBytes;
  }

  private peekHeader(): Uint8Array {
    const first = this.buffered[0]!;
    if (first.length >= HEADER_BYTES) return first;
    return concatBytes(this.buffered, HEADER_BYTES);
  }

  private take(n: number): Uint8Array {
    const first = this.buffered[0]!;
    let out: Uint8Array;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.buffered.shift();
      else this.buffered[0] = first.subarray(n);
    } else {
      out = new Uint8Array(n);
      let filled = 0;
      while (filled < n) {
        const part = this.buffered[0]!;
        const used = Math.min(part.length, n - filled);
        out.set(used === part.length ? part : part.subarray(0, used), filled);
        filled += used;
        if (used === part.length) this.buffered.shift();
        else this.buffered[0] = part.subarray(used);
      }
    }
    this.bufferedBytes -= n;
    return out;
  }
}

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
