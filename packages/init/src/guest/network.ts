// eth0 configuration through the classic SIOC* ioctls on an AF_INET socket
// (no netlink needed for one address and one default route). `lo` is brought
// up too: 127.0.0.1 is the guest's own; the host is reached through the
// gateway (host.iii.internal in /etc/hosts), which avoids iii #1451.

import { existsSync, writeFileSync } from "node:fs";
import type { Libc } from "./native.js";
import {
  AF_INET,
  IFF_RUNNING,
  IFF_UP,
  RTF_GATEWAY,
  RTF_UP,
  SIOCADDRT,
  SIOCGIFFLAGS,
  SIOCSIFADDR,
  SIOCSIFFLAGS,
  SIOCSIFMTU,
  SIOCSIFNETMASK,
  SOCK_DGRAM,
} from "./native.js";

const IFREQ_BYTES = 40;
const RTENTRY_BYTES = 120; // x86_64 / aarch64 (LP64)

function ifreq(name: string): Buffer {
  const buf = Buffer.alloc(IFREQ_BYTES);
  buf.write(name, 0, 15, "ascii");
  return buf;
}

function writeSockaddrIn(buf: Buffer, offset: number, ip: string): void {
  buf.writeUInt16LE(AF_INET, offset); // sa_family is host order (little endian on our targets)
  const parts = ip.split(".").map(Number);
  for (let i = 0; i < 4; i++) buf.writeUInt8(parts[i]!, offset + 4 + i);
}

function setUp(libc: Libc, fd: number, name: string): boolean {
  const req = ifreq(name);
  libc.ioctlBuf(fd, SIOCGIFFLAGS, req);
  const flags = req.readInt16LE(16);
  if ((flags & IFF_UP) !== 0) return false;
  req.writeInt16LE(flags | IFF_UP | IFF_RUNNING, 16);
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
      req.writeInt32LE(net.mtu, 16);
      libc.ioctlBuf(fd, SIOCSIFMTU, req);
    });
    step("bring up", () => void setUp(libc, fd, device));
    step("add default route", () => {
      const rt = Buffer.alloc(RTENTRY_BYTES);
      writeSockaddrIn(rt, 8, "0.0.0.0"); // rt_dst
      writeSockaddrIn(rt, 24, net.gateway); // rt_gateway
      writeSockaddrIn(rt, 40, "0.0.0.0"); // rt_genmask
      rt.writeUInt16LE(RTF_UP | RTF_GATEWAY, 56); // rt_flags
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
export function disableIpv6(procSys = "/proc/sys/net/ipv6/conf"): string[] {
  const done: string[] = [];
  for (const scope of ["all", "default"]) {
    const path = `${procSys}/${scope}/disable_ipv6`;
    if (!existsSync(path)) continue;
    try {
      writeFileSync(path, "1");
    } catch (err) {
      throw new Error(`${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
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
