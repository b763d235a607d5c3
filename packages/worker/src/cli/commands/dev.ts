import type { Command } from "commander";
import { capabilityOptions, collect, DEFAULT_ENGINE_URL } from "../options.js";

/** `iii-worker dev`: runs a local project in a sandbox with hot reload. */
export function registerDev(program: Command): void {
  const dev = program
    .command("dev")
    .description("run a local project in a VM, live-mounted at /workspace, with hot reload (Ctrl-C stops it)")
    .argument("<path>", "the project directory")
    .option("--name <name>", "sandbox name (default iii-dev-<project>)")
    .option("--rebuild", "re-run install even if cached")
    .option("--engine-url <url>", "engine URL passed to the worker as III_URL/III_ENGINE_URL", DEFAULT_ENGINE_URL)
    .option("--capture <file>", "write a pcap of the sandbox's network traffic (both directions) to this file")
    .option("--host-port <port>", "host loopback port the guest may reach through its gateway, e.g. a local package registry (repeatable)", collect);
  capabilityOptions(dev)
    .option("--accept-resources", "take iii.worker.yaml's resources even when they ask for more than the last dev run of the project (the dev VM can write that file)")
    .action(async (path: string, opts) => {
      const { runDev } = await import("./dev-run.js");
      process.exitCode = await runDev(path, {
        name: opts.name,
        rebuild: !!opts.rebuild,
        acceptResources: !!opts.acceptResources,
        engineUrl: opts.engineUrl,
        ...(opts.capture !== undefined ? { capture: opts.capture as string } : {}),
        ...(opts.hostPort !== undefined ? { hostPorts: opts.hostPort as string[] } : {}),
        ...(opts.capAdd !== undefined ? { capAdd: opts.capAdd as string[] } : {}),
        ...(opts.capDrop !== undefined ? { capDrop: opts.capDrop as string[] } : {}),
      });
    });
}
