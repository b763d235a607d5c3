// The static init's network configuration: the portable implementation on iii:sys.
import * as os from "os";
import * as sys from "iii:sys";
import type { NetPlatform } from "../portable/network.js";
import { check, exists, writeText } from "./sys.js";

export const staticNetPlatform: NetPlatform = {
  socket: (domain, type, protocol) => check("socket", sys.socket(domain, type, protocol)),
  ioctlBuf: (fd, request, buf) => {
    // The C side takes a whole ArrayBuffer: copy through one when `buf` is a view into a larger one.
    const whole = buf.byteOffset === 0 && buf.byteLength === buf.buffer.byteLength;
    const ab = whole ? (buf.buffer as ArrayBuffer) : buf.slice().buffer;
    check(`ioctl 0x${request.toString(16)}`, sys.ioctlBuf(fd, request, ab));
    if (!whole) buf.set(new Uint8Array(ab));
  },
  close: (fd) => void os.close(fd),
  exists,
  writeFile: (path, text) => writeText(path, text),
};
