// The Node init's network configuration: the portable implementation
// (portable/network.ts) on koffi's libc and node:fs.
import { existsSync, writeFileSync } from "node:fs";
import type { Libc } from "./native.js";
import type { NetPlatform } from "../portable/network.js";

export { configureInterface, disableIpv6, hostsFile, loopbackUp, resolvConf, type NetworkSettings } from "../portable/network.js";

export function nodeNetPlatform(libc: Libc): NetPlatform {
  return {
    socket: (domain, type, protocol) => libc.socket(domain, type, protocol),
    // A Buffer view of the same memory: the ioctl's out-parameters land in `buf`.
    ioctlBuf: (fd, request, buf) => libc.ioctlBuf(fd, request, Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength)),
    close: (fd) => libc.close(fd),
    exists: (path) => existsSync(path),
    writeFile: (path, text) => writeFileSync(path, text),
  };
}
