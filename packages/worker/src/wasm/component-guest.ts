import { createRequire, syncBuiltinESMExports } from "node:module";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { parseWasiConfig } from "./config.js";
import type { GuestData } from "./protocol.js";
import { egressRulesFor, guardShimSockets, type ShimSockets } from "./net-guard.js";

interface ShimCli {
  _setEnv(env: Record<string, string>): void;
  _setArgs(args: string[]): void;
  _setCwd(cwd: string): void;
}
interface ShimFs {
  _clearPreopens(): void;
  _setPreopens(preopens: Record<string, string>): void;
}

/**
 * Preview 2: the jco transpilation runs on preview2-shim in this worker thread. The shim's preopens default to
 * the host's `/`: they are replaced by exactly the dirs of WASI_CONFIG (read-only ones are held read-only by the
 * runner's permission model, since the shim has no read-only flag). The shim's network switches are
 * all-or-nothing per protocol: TCP, UDP and name lookup are denied unless WASI_CONFIG opens them.
 * The shim ends the thread with process.exit(code) on `exit`/`exit-with-code`: the runner takes that code.
 */
export async function runComponentGuest(data: GuestData, started: () => void, exited: (code: number) => void): Promise<void> {
  const config = parseWasiConfig(data.configText);
  keepWorkersUnderPermissionModel();
  const urls = JSON.parse(process.env.III_WASM_SHIM_URLS ?? "{}") as Record<string, string>;
  const cli = (await import(urls.cli!)) as ShimCli;
  const fs = (await import(urls.filesystem!)) as ShimFs;
  const sockets = (await import(urls.sockets!)) as ShimSockets;
  cli._setEnv(config.env);
  cli._setArgs(config.args);
  cli._setCwd(config.dirs[0]?.guestPath ?? "/");
  fs._clearPreopens();
  fs._setPreopens(Object.fromEntries(config.dirs.map((d) => [d.guestPath, d.hostPath])));
  const net = config.network;
  const { EgressPolicy } = (await import("@iii/network")) as unknown as { EgressPolicy: new (o: object) => { decide(p: string, ip: number, port: number, gw: number): { allowed: boolean; rule: string } } };
  const policy = new EgressPolicy({
    mode: net.inherit ? "public" : "none",
    hostPorts: [],
    rules: [...egressRulesFor(net.tcpConnect, "tcp"), ...egressRulesFor([...net.udpConnect, ...net.udpOutgoing], "udp")],
  });
  guardShimSockets(sockets, net, (protocol, ip, port) => policy.decide(protocol, ip, port, 0xffffffff), (d) =>
    process.stderr.write(`[iii: network ${d.op} ${d.address} refused: ${d.reason}]\n`),
  );
  const component = (await import(pathToFileURL(join(data.launch.transpiled!, "component.js")).href).catch((error: Error) => {
    if (/protocol 'iii:'/.test(error.message)) throw new Error("the component uses the iii:worker world: serving it (engine registration) is not implemented yet");
    throw error;
  })) as {
    run?: { run(): void };
  };
  if (!component.run) throw new Error("the component does not export wasi:cli/run (only command components can run as workers yet)");
  started();
  component.run.run();
  exited(0);
}

/**
 * A Worker created with `execArgv: []` runs WITHOUT Node's permission model (measured on Node 24.21: such a
 * worker creates files outside --allow-fs-write; a worker with the default execArgv is refused), and
 * preview2-shim creates its I/O worker — the thread that opens files and sockets — with exactly that option.
 * So before the shim loads, every Worker this thread creates gets its execArgv dropped (inherit: permission
 * model included).
 */
export function keepWorkersUnderPermissionModel(): void {
  const threads = createRequire(import.meta.url)("node:worker_threads") as typeof import("node:worker_threads");
  const Original = threads.Worker;
  if ((Original as unknown as { iiiGuarded?: boolean }).iiiGuarded) return;
  class InheritingWorker extends Original {
    static iiiGuarded = true;
    constructor(filename: string | URL, options: import("node:worker_threads").WorkerOptions = {}) {
      const { execArgv: _dropped, ...rest } = options;
      super(filename, rest);
    }
  }
  threads.Worker = InheritingWorker as typeof Original;
  syncBuiltinESMExports();
}
