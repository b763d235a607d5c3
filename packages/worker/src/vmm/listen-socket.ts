import { chmodSync, closeSync, rmSync } from "node:fs";
import { IiiError } from "../errors.js";
import { libcErrno as errno, libcFunction } from "../host/libc.js";

const AF_UNIX = 1;
const SOCK_STREAM = 1;
const SOCK_CLOEXEC = 0o2000000;
/** sizeof(struct sockaddr_un): sa_family_t (2 bytes) + sun_path[108]. */
const SOCKADDR_UN_BYTES = 110;

interface SocketCalls {
  socket: (domain: number, type: number, protocol: number) => number;
  bind: (fd: number, addr: Buffer, len: number) => number;
  listen: (fd: number, backlog: number) => number;
}

/** The socket calls, bound on first use from the process's one libc handle (host/libc.ts). */
function socketCalls(): SocketCalls {
  return {
    socket: libcFunction<SocketCalls["socket"]>("int socket(int domain, int type, int protocol)"),
    bind: libcFunction<SocketCalls["bind"]>("int bind(int fd, const void *addr, uint32_t len)"),
    listen: libcFunction<SocketCalls["listen"]>("int listen(int fd, int backlog)"),
  };
}

/**
 * A listening unix stream socket at `path` (a stale file there is replaced), mode 0600, as a plain blocking
 * descriptor that this process never accepts on: its owner hands it to a server (virtiofsd `--fd=3`) that
 * accepts later. A client that connects in between waits in the listen backlog, so QEMU can be spawned
 * before the virtiofsd it dials. Node's net.Server cannot be used for this: it accepts every connection
 * itself. The descriptor is close-on-exec; pass it to one child through `stdio` and close it here after.
 */
export function listenUnixSocket(path: string, backlog = 4): number {
  const bytes = Buffer.byteLength(path);
  if (bytes >= SOCKADDR_UN_BYTES - 2) throw new IiiError("InvalidOption", `unix socket path ${path} is longer than ${SOCKADDR_UN_BYTES - 3} bytes`);
  const { socket, bind, listen } = socketCalls();
  rmSync(path, { force: true });
  const fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw new IiiError("VmBootFailed", `socket(AF_UNIX) for ${path} failed (errno ${errno()})`);
  try {
    const addr = Buffer.alloc(SOCKADDR_UN_BYTES);
    addr.writeUInt16LE(AF_UNIX, 0);
    addr.write(path, 2, "utf8");
    if (bind(fd, addr, 2 + bytes + 1) !== 0) throw new IiiError("VmBootFailed", `cannot bind ${path} (errno ${errno()})`);
    chmodSync(path, 0o600);
    if (listen(fd, backlog) !== 0) throw new IiiError("VmBootFailed", `cannot listen on ${path} (errno ${errno()})`);
    return fd;
  } catch (error) {
    closeSync(fd);
    rmSync(path, { force: true });
    throw error;
  }
}
