import { readFileSync } from "node:fs";

export interface DnsServerAddress {
  host: string;
  port: number;
}

/** "1.2.3.4" or "1.2.3.4:5353" (IPv4 only). */
export function parseServer(text: string): DnsServerAddress {
  const m = /^(\d+\.\d+\.\d+\.\d+)(?::(\d+))?$/.exec(text.trim());
  if (!m) throw new Error(`invalid DNS server "${text}" (expected IPv4[:port])`);
  return { host: m[1]!, port: m[2] ? Number(m[2]) : 53 };
}

/** IPv4 nameservers from resolv.conf, in order (RFC-less but glibc's format). */
export function readResolvConf(path = "/etc/resolv.conf"): DnsServerAddress[] {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    return [];
  }
  const out: DnsServerAddress[] = [];
  for (const line of text.split("\n")) {
    const m = /^\s*nameserver\s+(\d+\.\d+\.\d+\.\d+)\s*$/.exec(line);
    if (m) out.push({ host: m[1]!, port: 53 });
  }
  return out;
}
