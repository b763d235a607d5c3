import { spawnSync } from "node:child_process";

/**
 * Addresses that exist only on this machine, for attack tests: a port-less bridge device in the
 * HOST namespace (this kernel has no `dummy` driver) carrying
 * - `hostAddresses`: real interface addresses (`ip addr add A/32`), listed by os.networkInterfaces();
 * - `localRoutes`: AnyIP local routes (`ip route add local A/32 table local`): delivered locally
 *   (a listener on 0.0.0.0 answers) but NOT listed as interface addresses, so only the range
 *   tables can refuse them;
 * - `deadRoutes`: routes into the port-less bridge: neighbour resolution never completes, connect()
 *   hangs then fails with EHOSTUNREACH, and no packet leaves the machine.
 * Every address is checked with `ip route get` before the test may use it; deleting the device
 * (close(), or process exit as a last resort) removes every address and route with it.
 */
export class LocalTargets {
  readonly device = `iiib${process.pid % 100000}`;
  private closed = false;
  private readonly onExit = () => this.close();

  private constructor() {}

  static create(spec: { hostAddresses?: string[]; localRoutes?: string[]; deadRoutes?: string[] }): LocalTargets {
    const t = new LocalTargets();
    process.once("exit", t.onExit);
    try {
      ip(["link", "del", t.device], true);
      ip(["link", "add", t.device, "type", "bridge"]);
      ip(["link", "set", t.device, "up"]);
      for (const a of spec.hostAddresses ?? []) ip(["addr", "add", `${a}/32`, "dev", t.device]);
      for (const a of spec.localRoutes ?? []) ip(["route", "add", "local", `${a}/32`, "dev", t.device, "table", "local"]);
      for (const a of spec.deadRoutes ?? []) ip(["route", "add", `${a}/32`, "dev", t.device]);
      for (const a of [...(spec.hostAddresses ?? []), ...(spec.localRoutes ?? [])]) {
        const r = ip(["-4", "route", "get", a]);
        if (!r.startsWith("local ")) throw new Error(`${a} is not local on this machine: ${r}`);
      }
      for (const a of spec.deadRoutes ?? []) {
        const r = ip(["-4", "route", "get", a]);
        if (!r.includes(`dev ${t.device}`) || r.startsWith("local ")) throw new Error(`${a} does not route into ${t.device}: ${r}`);
      }
    } catch (err) {
      t.close();
      throw err;
    }
    return t;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    process.off("exit", this.onExit);
    ip(["link", "del", this.device], true);
  }
}

function ip(args: string[], mayFail = false): string {
  const r = spawnSync("ip", args, { encoding: "utf8" });
  if (r.status !== 0 && !mayFail) throw new Error(`ip ${args.join(" ")}: ${r.stderr.trim()}`);
  return r.stdout.trim();
}
