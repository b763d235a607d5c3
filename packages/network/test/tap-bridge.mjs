// Frame bridge for the namespace harness: a TAP device (created with TUNSETIFF through koffi)
// on one side, the stack's unix-socket transport (4-byte big-endian length + Ethernet frame)
// on the other. Each direction is a worker thread doing blocking read/write syscalls, so the
// bridge adds no event-loop latency. Run inside the namespace: node tap-bridge.mjs TAP SOCKET
import { createRequire } from "node:module";
import { Worker, isMainThread, workerData } from "node:worker_threads";

const require = createRequire(import.meta.url);
const koffi = require("koffi");
const libc = koffi.load("libc.so.6");
const open = libc.func("int open(const char *path, int flags)");
const ioctl = libc.func("int ioctl(int fd, unsigned long req, void *arg)");
// The buffers are passed as raw addresses (base + offset): a Buffer view per frame would be an
// allocation per frame on the bridge's hot loops, which a VMM written in C does not have.
const read = libc.func("long read(int fd, intptr_t buf, unsigned long n)");
const write = libc.func("long write(int fd, intptr_t buf, unsigned long n)");
/** Address of a Buffer's first byte (its backing store does not move). */
const addressOf = (buf) => Number(koffi.address(buf));
const socket = libc.func("int socket(int domain, int type, int protocol)");
const connect = libc.func("int connect(int fd, const void *addr, unsigned int len)");
const poll = libc.func("int poll(void *fds, unsigned long n, int timeout)");
const fcntl = libc.func("int fcntl(int fd, int cmd, int arg)");
const errno = () => koffi.errno();

const O_RDWR = 2;
const TUNSETIFF = 0x400454ca;
const IFF_TAP = 0x0002;
const IFF_NO_PI = 0x1000;
const EINTR = 4;
const EAGAIN = 11;
const F_SETFL = 4;
const O_NONBLOCK = 0o4000;

function writeAll(fd, addr, len) {
  let off = 0;
  while (off < len) {
    const n = Number(write(fd, addr + off, len - off));
    if (n < 0) {
      if (errno() === EINTR) continue;
      return false;
    }
    off += n;
  }
  return true;
}

if (isMainThread) {
  const [tapName, socketPath] = process.argv.slice(2);
  const tun = open("/dev/net/tun", O_RDWR);
  if (tun < 0) throw new Error(`open /dev/net/tun failed: errno ${errno()}`);
  const ifr = Buffer.alloc(40);
  ifr.write(tapName, 0, 15, "utf8");
  ifr.writeUInt16LE(IFF_TAP | IFF_NO_PI, 16);
  if (ioctl(tun, TUNSETIFF, ifr) < 0) throw new Error(`TUNSETIFF ${tapName} failed: errno ${errno()}`);
  const sock = socket(1, 1, 0);
  const addr = Buffer.alloc(110);
  addr.writeUInt16LE(1, 0);
  addr.write(socketPath, 2, 107, "utf8");
  if (connect(sock, addr, 110) < 0) throw new Error(`connect ${socketPath} failed: errno ${errno()}`);
  const url = new URL(import.meta.url);
  for (const dir of ["tap-to-socket", "socket-to-tap"]) {
    const w = new Worker(url, { workerData: { dir, tun, sock } });
    w.on("exit", () => process.exit(0));
    w.on("error", (e) => {
      process.stderr.write(`bridge ${dir}: ${e.stack}\n`);
      process.exit(1);
    });
  }
  process.stdout.write("ready\n");
} else {
  const { dir, tun, sock } = workerData;
  if (dir === "tap-to-socket") {
    // Drain the tap without blocking and send everything read in one write: one syscall per
    // burst instead of per frame, so the guest's tap queue does not overflow under load.
    fcntl(tun, F_SETFL, O_NONBLOCK);
    const cap = 1 << 20;
    const buf = Buffer.alloc(cap + 65536 + 4);
    const addr = addressOf(buf);
    const pfd = Buffer.alloc(8);
    pfd.writeInt32LE(tun, 0);
    pfd.writeInt16LE(1, 4); // POLLIN
    let used = 0;
    for (;;) {
      const n = Number(read(tun, addr + used + 4, 65536));
      if (n > 0) {
        buf.writeUInt32BE(n, used);
        used += 4 + n;
        if (used < cap) continue;
      } else if (n < 0 && errno() !== EAGAIN && errno() !== EINTR) {
        break;
      }
      if (used > 0) {
        if (!writeAll(sock, addr, used)) break;
        used = 0;
        continue;
      }
      poll(pfd, 1, -1);
    }
  } else {
    const cap = 1 << 20;
    const buf = Buffer.alloc(cap);
    const addr = addressOf(buf);
    let have = 0;
    for (;;) {
      const n = Number(read(sock, addr + have, cap - have));
      if (n < 0 && errno() === EINTR) continue;
      if (n <= 0) break;
      have += n;
      let off = 0;
      while (have - off >= 4) {
        const len = buf.readUInt32BE(off);
        if (have - off - 4 < len) break;
        write(tun, addr + off + 4, len);
        off += 4 + len;
      }
      if (off > 0) {
        buf.copy(buf, 0, off, have);
        have -= off;
      }
    }
  }
}
