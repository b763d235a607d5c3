import { type ChildProcess, execFile, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { NetworkStack, type NetworkStackOptions, ipToString } from "../src/index.js";

const execFileP = promisify(execFile);
const BRIDGE = fileURLToPath(new URL("./tap-bridge.mjs", import.meta.url));
let counter = 0;

// Last-resort cleanup if the worker exits without afterAll (timeout kill, crash): namespaces,
// /etc/netns entries and bridge processes must not outlive the test run.
const live = new Set<GuestNamespace>();
process.once("exit", () => {
  for (const g of live) g.forceCleanupSync();
});

/** Why the namespace harness cannot run here, or undefined when it can. */
export function harnessUnavailable(): string | undefined {
  if (process.platform !== "linux") return "not Linux";
  if (!existsSync("/dev/net/tun")) return "/dev/net/tun is missing";
  if (!spawnSyncOk("ip", ["netns", "list"])) return "`ip netns` is not usable";
  return undefined;
}

function spawnSyncOk(cmd: string, args: string[]): boolean {
  try {
    return spawnSync(cmd, args, { stdio: "ignore" }).status === 0;
  } catch {
    return false;
  }
}

export interface ExecResult {
  stdout: string;
  stderr: string;
  code: number;
}

/**
 * A Linux network namespace whose only interface is a TAP device bridged (by tap-bridge.mjs:
 * koffi TUNSETIFF + blocking read/write in two worker threads) to the stack's unix-socket transport.
 * Real tools inside `ip netns exec` are the guest.
 */
export class GuestNamespace {
  readonly name: string;
  readonly tap: string;
  readonly dir: string;
  readonly socketPath: string;
  private bridge: ChildProcess | undefined;
  private closing = false;
  private readonly children = new Set<ChildProcess>();

  constructor() {
    const n = counter++;
    this.name = `iiinet-${process.pid}-${n}`;
    this.tap = `iit${process.pid % 100000}x${n}`.slice(0, 15);
    this.dir = mkdtempSync(join(tmpdir(), `iii-net-${process.pid}-`));
    this.socketPath = join(this.dir, "vm.sock");
    live.add(this);
  }

  forceCleanupSync(): void {
    for (const c of this.children) c.kill("SIGKILL");
    this.bridge?.kill("SIGKILL");
    spawnSync("ip", ["netns", "del", this.name], { stdio: "ignore" });
    rmSync(`/etc/netns/${this.name}`, { recursive: true, force: true });
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** Creates the namespace and the bridge; the stack must already listen on `socketPath`. */
  async start(stack: NetworkStack, mtu = 1500): Promise<void> {
    await run("ip", ["netns", "add", this.name]);
    const etc = `/etc/netns/${this.name}`;
    mkdirSync(etc, { recursive: true });
    writeFileSync(join(etc, "resolv.conf"), `nameserver ${ipToString(stack.addresses.gatewayIp)}\noptions timeout:2 attempts:1\n`);
    const mac = Array.from(stack.addresses.guestMac, (b) => b.toString(16).padStart(2, "0")).join(":");
    this.bridge = spawn("ip", ["netns", "exec", this.name, process.execPath, BRIDGE, this.tap, this.socketPath], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    let bridgeErr = "";
    this.bridge.stderr?.on("data", (d: Buffer) => {
      bridgeErr += d.toString();
    });
    this.bridge.on("exit", (code, signal) => {
      if (!this.closing) process.stderr.write(`harness: frame bridge exited early: code=${code} signal=${signal} ${bridgeErr}\n`);
    });
    const deadline = Date.now() + 10_000;
    for (;;) {
      const r = await this.exec(["ip", "link", "show", this.tap]);
      if (r.code === 0) break;
      if (Date.now() > deadline || this.bridge.exitCode !== null) throw new Error(`tap ${this.tap} did not appear: ${bridgeErr}`);
      await new Promise((r2) => setTimeout(r2, 50));
    }
    const guest = `${ipToString(stack.addresses.guestIp)}/30`;
    const gw = ipToString(stack.addresses.gatewayIp);
    // A virtio ring stops the guest's queue when full; a TAP device drops instead. A deep TX
    // queue makes the TAP behave like the lossless virtio path under bursts of many flows.
    await this.sh(
      `ip link set lo up && ip link set ${this.tap} address ${mac} mtu ${mtu} txqueuelen 10000 && ip link set ${this.tap} up && ` +
        `ip addr add ${guest} dev ${this.tap} && ip route add default via ${gw}`,
    );
  }

  exec(argv: string[], opts: { timeoutMs?: number; input?: string } = {}): Promise<ExecResult> {
    return new Promise((resolve) => {
      const child = spawn("ip", ["netns", "exec", this.name, ...argv], { stdio: ["pipe", "pipe", "pipe"] });
      this.children.add(child);
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (d: Buffer) => {
        stdout += d.toString();
      });
      child.stderr.on("data", (d: Buffer) => {
        stderr += d.toString();
      });
      const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 60_000);
      child.on("close", (code) => {
        clearTimeout(timer);
        this.children.delete(child);
        resolve({ stdout, stderr, code: code ?? -1 });
      });
      // The tool may exit without reading stdin (EPIPE): that is not a test failure.
      child.stdin.on("error", () => {});
      child.stdin.end(opts.input ?? "");
    });
  }

  sh(script: string, opts: { timeoutMs?: number } = {}): Promise<ExecResult> {
    return this.exec(["sh", "-c", script], opts);
  }

  /** Starts a long-running process in the namespace (killed by close()). */
  spawn(argv: string[]): ChildProcess {
    const child = spawn("ip", ["netns", "exec", this.name, ...argv], { stdio: ["ignore", "pipe", "pipe"] });
    this.children.add(child);
    child.on("close", () => this.children.delete(child));
    return child;
  }

  async close(): Promise<void> {
    this.closing = true;
    live.delete(this);
    for (const c of this.children) c.kill("SIGKILL");
    if (this.bridge && this.bridge.exitCode === null) {
      const q = this.bridge;
      await new Promise<void>((resolve) => {
        q.once("close", () => resolve());
        q.kill("SIGKILL");
      });
    }
    await run("ip", ["netns", "del", this.name]).catch(() => {});
    rmSync(`/etc/netns/${this.name}`, { recursive: true, force: true });
    rmSync(this.dir, { recursive: true, force: true });
  }
}

async function run(cmd: string, args: string[]): Promise<void> {
  await execFileP(cmd, args);
}

/** A stack plus a guest namespace wired to it. */
export async function startGuest(options: Partial<NetworkStackOptions> & { mtu?: number } = {}): Promise<{
  stack: NetworkStack;
  guest: GuestNamespace;
  logs: string[];
  close(): Promise<void>;
}> {
  const logs: string[] = [];
  const stack = new NetworkStack({ slot: 7, log: (l) => logs.push(l), ...options });
  const guest = new GuestNamespace();
  try {
    await stack.listen(guest.socketPath);
    await guest.start(stack, options.mtu ?? 1500);
  } catch (err) {
    await guest.close();
    await stack.close();
    throw err;
  }
  return {
    stack,
    guest,
    logs,
    async close() {
      await guest.close();
      await stack.close();
    },
  };
}
