import type { Command } from "commander";

/** `iii-worker list`: lists the project's workers with their status. */
export function registerList(program: Command): void {
  program
    .command("list")
    .alias("ls")
    .description("list the workers of ./iii.workers.yaml: NAME IMAGE STATUS")
    .option("--json", "machine-readable output")
    .option("-q, --quiet", "only the names, one a line")
    .option("-a, --all", "also workers outside ./iii.workers.yaml that have run under III_HOME: dev sandboxes and other projects' workers (adds PROJECT)")
    .action(async (opts) => {
      const { loadWorkersFile } = await import("../../state/workers-file.js");
      const { workersFilePath } = await import("../../paths.js");
      const { isWasmImage } = await import("../../state/model.js");
      const { workerStatus } = await import("../../status.js");
      const { formatTable } = await import("../output.js");
      const { terminalJson, terminalSafeLine } = await import("../../util/terminal-safe.js");
      const { otherWorkers } = await import("./list-run.js");
      const file = await loadWorkersFile(workersFilePath());
      if (opts.quiet && !opts.all) {
        for (const name of Object.keys(file.workers).sort()) console.log(terminalSafeLine(name));
        return;
      }
      const rows = [
        ...(await Promise.all(
          Object.entries(file.workers)
            .sort(([a], [b]) => (a < b ? -1 : 1))
            .map(async ([name, spec]) => ({ ...(await workerStatus(name)), name, image: spec.image, spec, project: process.cwd() })),
        )),
        ...(opts.all ? await otherWorkers(process.cwd()) : []),
      ];
      if (opts.quiet) {
        for (const r of rows) console.log(terminalSafeLine(r.name));
        return;
      }
      if (opts.json) {
        console.log(
          terminalJson(
            rows.map((r) => ({
              name: r.name,
              image: r.image,
              status: r.state,
              pid: r.pid ?? null,
              ...(r.unhealthy ? { health: "unhealthy", healthReason: r.unhealthy.reason } : {}),
              lastExit: r.lastExit ?? null,
              tier: isWasmImage(r.image) ? "wasm" : "vm",
              // The user's part of the egress policy; the builtin denies (host addresses, special ranges) always apply.
              network: { mode: r.spec.network.mode ?? "public", allow: r.spec.network.allow, deny: r.spec.network.deny, hostPorts: r.spec.network.hostPorts },
              ...(opts.all ? { project: r.project } : {}),
            })),
            2,
          ),
        );
        return;
      }
      // STATUS carries a last exit's reason (a guest's text): formatTable prints every cell terminal-safe.
      const statusText = (r: (typeof rows)[number]) =>
        r.unhealthy
          ? `unhealthy: ${r.unhealthy.reason}`
          : r.state === "crashed" && r.lastExit?.crashed
          ? `crashed: ${r.lastExit.reason}`
          : r.state === "failed" && r.lastExit?.startFailed
            ? `failed to start: ${r.lastExit.reason.replace(/^worker "[^"]*" failed to start: /, "")}`
          : r.lastExit?.oomKilled && r.state !== "running" && r.state !== "pending"
            ? `${r.state} (exit ${r.lastExit.code}: killed by the out-of-memory killer)`
          : r.state === "failed" && r.lastExit?.code == null
            ? `failed: ${r.lastExit?.reason}`
          : r.state === "running" || r.state === "pending" || r.lastExit?.code == null
            ? r.state
            : `${r.state} (exit ${r.lastExit.code})`;
      console.log(
        opts.all
          ? formatTable(["NAME", "IMAGE", "STATUS", "PROJECT"], rows.map((r) => [r.name, r.image, statusText(r), r.project]))
          : formatTable(["NAME", "IMAGE", "STATUS"], rows.map((r) => [r.name, r.image, statusText(r)])),
      );
    });
}
