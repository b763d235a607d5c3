/** IPv4 addresses are carried as unsigned 32-bit numbers inside the stack. */
export function ipToString(ip: number): string {
  return `${ip >>> 24}.${(ip >>> 16) & 0xff}.${(ip >>> 8) & 0xff}.${ip & 0xff}`;
}

export function parseIp(text: string): number | undefined {
  const parts = text.split(".");
  if (parts.length !== 4) return undefined;
  let ip = 0;
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p)) return undefined;
    const n = Number(p);
    if (n > 255) return undefined;
    ip = ip * 256 + n;
  }
  return ip >>> 0;
}

export function macToString(mac: Uint8Array): string {
  return Array.from(mac, (b) => b.toString(16).padStart(2, "0")).join(":");
}

export function readIp(buf: Uint8Array, offset: number): number {
  return ((buf[offset]! << 24) | (buf[offset + 1]! << 16) | (buf[offset + 2]! << 8) | buf[offset + 3]!) >>> 0;
}

export function writeIp(buf: Uint8Array, offset: number, ip: number): void {
  buf[offset] = ip >>> 24;
  buf[offset + 1] = (ip >>> 16) & 0xff;
  buf[offset + 2] = (ip >>> 8) & 0xff;
  buf[offset + 3] = ip & 0xff;
}
