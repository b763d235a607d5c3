// eth0 configuration through the classic SIOC* ioctls on an AF_INET socket
// (no netlink needed for one address and one default route). `lo` is brought
// up too: 127.0.0.1 is the guest's own; the host is reached through the
// gateway (host.iii.internal in /etc/hosts), which avoids iii #1451.

//
// Portable: the system calls come in as a NetPlatform (static/network.ts in the
// init); buffers are Uint8Array/DataView.

/** What the network code needs from the runtime. Failing calls throw. */
export interface NetPlatform {
  socket(domain: number, type: number, protocol: number): number;
  /** ioctl with a pointer to `buf` (in/out). */
  ioctlBuf(fd: number, request: number, buf: Uint8Array): void;
  close(fd: number): void;
  exists(path: string): boolean;
  /** Throws an Error whose `code` is the errno name. */
  writeFile(path: string, text: string): void;
}

const AF_INET = 2;
const SOCK_DGRAM = 2;
const SIOCGIFFLAGS = 0x8913;
const SIOCSIFFLAGS = 0x8914;
const SIOCSIFADDR = 0x8916;
const SIOCSIFNETMASK = 0x891c;
const SIOCSIFMTU = 0x8922;
const SIOCADDRT = 0x890b;
const IFF_UP = 0x1;
const IFF_RUNNING = 0x40;
const RTF_UP = 0x1;
const RTF_GATEWAY = 0x2;
type Libc = NetPlatform;

const IFREQ_BYTES = 40;
const RTENTRY_BYTES = 120; // x86_64 / aarch64 (LP64)

function ifreq(name: string): Uint8Array {
  const buf = new Uint8Array(IFREQ_BYTES);
  for (let i = 0; i < Math.min(name.length, 15); i++) buf[i] = name.charCodeAt(i) & 0x7f;
  return buf;
}

const view = (buf: Uint8Array): DataView => new DataView(buf.buffer, buf.byteOffset, buf.byteLength);

function writeSockaddrIn(buf: Uint8Array, offset: number, ip: string): void {
  view(buf).setUint16(offset, AF_INET, true); // sa_family is host order (little endian on our targets)
  const parts = ip.split(".").map(Number);
  for (let i = 0; i < 4; i++) buf[offset + 4 + i] = parts[i]!;
}

function setUp(libc: Libc, fd: number, name: string): boolean {
  const req = ifreq(name);
  libc.ioctlBuf(fd, SIOCGIFFLAGS, req);
  const flags = view(req).getInt16(16, true);
  if ((flags & IFF_UP) !== 0) return false;
  view(req).setInt16(16, flags | IFF_UP | IFF_RUNNING, true);
  libc.ioctlBuf(fd, SIOCSIFFLAGS, req);
  return true;
}

/** Bring `lo` up (workloads talk to themselves on 127.0.0.1); false if it already was. */
export function loopbackUp(libc: Libc): boolean {
  const fd = libc.socket(AF_INET, SOCK_DGRAM, 0);
  try {
    return setUp(libc, fd, "lo");
  } finally {
    libc.close(fd);
  }
}

export interface NetworkSettings {
  ip: string;
  netmask: string;
  gateway: string;
  mtu: number;
}

/** Configure `device`; each failure names the ioctl. */
export function configureInterface(libc: Libc, device: string, net: NetworkSettings): void {
  const fd = libc.socket(AF_INET, SOCK_DGRAM, 0);
  try {
    const step = (what: string, fn: () => void): void => {
      try {
        fn();
      } catch (err) {
        throw new Error(`${device} ${what}: ${(err as Error).message}`, { cause: err });
      }
    };
    step("set address", () => {
      const req = ifreq(device);
      writeSockaddrIn(req, 16, net.ip);
      libc.ioctlBuf(fd, SIOCSIFADDR, req);
    });
    step("set netmask", () => {
      const req = ifreq(device);
      writeSockaddrIn(req, 16, net.netmask);
      libc.ioctlBuf(fd, SIOCSIFNETMASK, req);
    });
    step("set mtu", () => {
      const req = ifreq(device);
      view(req).setInt32(16, net.mtu, true);
      libc.ioctlBuf(fd, SIOCSIFMTU, req);
    });
    step("bring up", () => void setUp(libc, fd, device));
    step("add default route", () => {
      const rt = new Uint8Array(RTENTRY_BYTES);
      writeSockaddrIn(rt, 8, "0.0.0.0"); // rt_dst
      writeSockaddrIn(rt, 24, net.gateway); // rt_gateway
      writeSockaddrIn(rt, 40, "0.0.0.0"); // rt_genmask
      view(rt).setUint16(56, RTF_UP | RTF_GATEWAY, true); // rt_flags
      libc.ioctlBuf(fd, SIOCADDRT, rt);
    });
  } finally {
    libc.close(fd);
  }
}

/**
 * Turn IPv6 off in the current network namespace (all interfaces, and the
 * default for new ones) where the kernel has it; returns the sysctls written.
 * Throws naming the first one that failed.
 */
export function disableIpv6(libc: NetPlatform, procSys = "/proc/sys/net/ipv6/conf"): string[] {
  const done: string[] = [];
  for (const scope of ["all", "default"]) {
    const path = `${procSys}/${scope}/disable_ipv6`;
    if (!libc.exists(path)) continue;
    try {
      libc.writeFile(path, "1");
    } catch (err) {
      throw new Error(`${path}: ${(err as { code?: string }).code ?? (err as Error).message}`, { cause: err });
    }
    done.push(scope);
  }
  return done;
}

export function hostsFile(hostname: string | null, gateway: string | null, options: { ipv6?: boolean } = {}): string {
  const lines = ["127.0.0.1\tlocalhost"];
  if (options.ipv6 !== false) lines.push("::1\tlocalhost ip6-localhost ip6-loopback");
  if (hostname) lines.push(`127.0.1.1\t${hostname}`);
  if (gateway) lines.push(`${gateway}\thost.iii.internal`);
  return `${lines.join("\n")}\n`;
}

export function resolvConf(dns: string[]): string {
  return `${dns.map((d) => `nameserver ${d}`).join("\n")}\n`;
}
