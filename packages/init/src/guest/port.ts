// Finding and opening the guest end of the control channel.
//
// virtio-serial ports are character devices; libuv treats them as files, so
// neither net.Socket nor fs streams fit: a read returns 0 while the host side
// is not connected (it is not EOF for good), and writes block until the host
// connects. VportStream wraps the fd with threadpool reads/writes and polls
// while the host is away.

import { connect } from "node:net";
import { existsSync, readFileSync, readdirSync, openSync, read, write, closeSync } from "node:fs";
import { Duplex } from "node:stream";

import { CONTROL_PORT_NAME } from "../protocol/frame.js";

/** /dev path of the virtio-serial port named `iii.control`, or null. */
export function findControlPort(sysDir = "/sys/class/virtio-ports", devDir = "/dev"): string | null {
  let entries: string[];
  try {
    entries = readdirSync(sysDir);
  } catch {
    return null;
  }
  for (const entry of entries.sort()) {
    try {
      if (readFileSync(`${sysDir}/${entry}/name`, "utf8").trim() === CONTROL_PORT_NAME) {
        const dev = `${devDir}/${entry}`;
        return existsSync(dev) ? dev : null;
      }
    } catch {}
  }
  return null;
}

class VportStream extends Duplex {
  private reading = false;
  constructor(private readonly fd: number) {
    super({ allowHalfOpen: true });
  }

  override _read(): void {
    if (this.reading) return;
    this.reading = true;
    const buf = Buffer.allocUnsafe(64 * 1024);
    read(this.fd, buf, 0, buf.length, null, (err, n) => {
      this.reading = false;
      if (err) {
        this.destroy(err);
        return;
      }
      if (n === 0) {
        // Host side not connected (yet, or any more): poll.
        setTimeout(() => this._read(), 50);
        return;
      }
      if (this.push(buf.subarray(0, n))) this._read();
    });
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    const writeAll = (offset: number): void => {
      write(this.fd, chunk, offset, chunk.length - offset, null, (err, n) => {
        if (err) cb(err);
        else if (offset + n < chunk.length) writeAll(offset + n);
        else cb();
      });
    };
    writeAll(0);
  }

  override _final(cb: (err?: Error | null) => void): void {
    cb();
  }

  override _destroy(err: Error | null, cb: (err: Error | null) => void): void {
    try {
      closeSync(this.fd);
    } catch {}
    cb(err);
  }
}

export interface ControlTransport {
  io: Duplex;
  description: string;
}

/**
 * Open the control transport: `override` is III_INIT_CONTROL ("none",
 * "unix:/path" for tests, or a device path); otherwise the iii.control port.
 */
export async function openControlTransport(override: string | null): Promise<ControlTransport | null> {
  if (override === "none") return null;
  if (override?.startsWith("unix:")) {
    const path = override.slice("unix:".length);
    const socket = connect(path);
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
    return { io: socket, description: override };
  }
  const dev = override ?? findControlPort();
  if (dev === null) return null;
  return { io: new VportStream(openSync(dev, "r+")), description: dev };
}
