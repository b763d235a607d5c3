import type { Command } from "commander";
import { capabilityOptions, collect, parsePullPolicy, wasmOptions } from "../options.js";

/** `iii-worker add`: adds a worker to ./iii.workers.yaml (pulling its image first). */
export function registerAdd(program: Command): void {
  const add = program
    .command("add")
    .description("add a worker from an OCI image, a registry short name, or a local source (dir:, oci:, oci-archive:, docker-archive:)")
    .argument("<image>", "image reference, short name[@version], or local source")
    .argument("[command...]", "command and arguments (after --) overriding the image's Entrypoint/Cmd")
    .option("--name <name>", "worker name (default: the image's last path segment)")
    .option("--cpus <quantity>", "CPUs, a Kubernetes quantity (500m, 2): vCPUs = ceil, and a fraction is a CPU quota")
    .option("--memory <quantity>", "memory, a Kubernetes quantity (512Mi, 1Gi, 1G)")
    .option("--disk <quantity>", "most disk the root filesystem's writes may take on the host, a Kubernetes quantity (default 10Gi, at least 64Mi); -m shares are not counted")
    .option("--pids <n>", "most processes/threads of the workload and execs together (default 1024)");
  capabilityOptions(add)
    .option("-e, --env <KEY=VALUE>", "environment variable (repeatable)", collect)
    .option("-p, --port <HOST:GUEST>", "publish guest port on host 127.0.0.1 (repeatable)", collect)
    .option("-m, --mount <HOST:GUEST[:ro]>", "share a host directory (repeatable)", collect)
    .option("--network <mode>", "public (default): the public internet only; none: only --allow rules, the engine and --host-port")
    .option("--allow <rule>", "network allow rule: [tcp/|udp/]CIDR|domain[:port[-port]] (repeatable)", collect)
    .option("--deny <rule>", "network deny rule, same forms as --allow (repeatable)", collect)
    .option("--host-port <port>", "host loopback port the guest may reach through its gateway (repeatable)", collect)
    .addHelpText(
      "after",
      `
Image names:
  A bare word (alpine, image-resize, image-resize@0.2.0) is an iii short name, resolved through the registry
  index at III_REGISTRY_URL. A reference with ':' or '/' is an OCI image; without a registry host it is Docker
  Hub's (node:22 = docker.io/library/node:22, so Docker Hub's alpine is alpine:latest). add prints which it chose.

Network policy (checked on the address actually dialled, after DNS):
  Always denied unless an allow rule is more specific: every address of this host's interfaces, 0.0.0.0/8,
  127.0.0.0/8 and the IANA special-purpose ranges (private, 100.64/10, link-local and metadata, TEST-NETs,
  198.18/15, multicast, 240/4, broadcast). The gateway reaches host loopback only on the engine port and
  --host-port ports.
  --network public allows other (public) addresses; --network none allows only what --allow rules name, and
  DNS then answers only names an allow rule names (others: REFUSED).
  Precedence: the most specific matching rule wins (longest prefix, a domain counting as /32 for the addresses
  it resolved; an exact domain before a wildcard); at equal specificity deny wins. So
  "--allow example.org:443 --deny 0.0.0.0/0" allows only example.org:443, and an allow rule opens a builtin
  range only when it is narrower than it (10.1.0.0/16 opens, 10.0.0.0/8 does not). Host addresses, loopback,
  link-local and multicast are never opened by a domain rule (no DNS rebinding into the host).`,
    )
    .option("--force", "replace an existing worker of the same name")
    .option("--pull <policy>", "missing (default), always or never: when to ask the registry", "missing")
    .option("--no-pull", "only record the reference, never going online; pull on the first start")
    .option("--insecure-registry <host[:port]>", "allow this registry over plain HTTP (repeatable)", collect)
    .option("--max-execution-ms <ms>", "WASM: wall-clock limit of a run (state failed, reason timeout)")
    .option("--cpu-budget-ms <ms>", "WASM: CPU time a run may use (state failed, reason cpu budget)")
    .option("--wasm-inherit-network", "WASM: use the host network stack: connects need no --wasm-tcp-connect/--wasm-udp-* pattern (still under the egress policy); binds still only as --wasm-tcp-bind/--wasm-udp-bind allow (none if empty; loopback, 0.0.0.0 and ports < 1024 only when a pattern names them)")
    .option("--wasm-allow-lookup", "WASM: allow name resolution (off by default)")
    .option("--wasm-tcp-connect <ADDR:PORT>", "WASM: allowed TCP connect target pattern (repeatable)", collect)
    .option("--wasm-tcp-bind <ADDR:PORT>", "WASM: allowed TCP bind pattern (repeatable)", collect)
    .option("--wasm-udp-bind <ADDR:PORT>", "WASM: allowed UDP bind pattern (repeatable)", collect)
    .option("--wasm-udp-connect <ADDR:PORT>", "WASM: allowed UDP connect pattern (repeatable)", collect)
    .option("--wasm-udp-outgoing <ADDR:PORT>", "WASM: allowed UDP send target pattern (repeatable)", collect)
    .action(async (image: string, command: string[], opts) => {
      // options that need no I/O are checked before anything else (the rest, in addWorker, before any network access)
      const pull = opts.pull === false ? undefined : parsePullPolicy(opts.pull);
      const wasm = wasmOptions(opts);
      const { addWorker } = await import("../../workers.js");
      const added = await addWorker(image, {
        ...(pull === undefined ? { fetchImage: false } : { pull }),
        insecureRegistries: opts.insecureRegistry ?? [],
        name: opts.name,
        cpus: opts.cpus,
        memory: opts.memory,
        disk: opts.disk,
        pids: opts.pids,
        capAdd: opts.capAdd,
        capDrop: opts.capDrop,
        network: opts.network,
        env: opts.env,
        ports: opts.port,
        mounts: opts.mount,
        command,
        allow: opts.allow,
        deny: opts.deny,
        hostPorts: opts.hostPort,
        force: opts.force,
        wasm,
      });
      // The summary names the image's own fields (manifest name and description, user, working directory): terminal-safe.
      const { terminalSafeLine } = await import("../../util/terminal-safe.js");
      console.error(terminalSafeLine(`${image}: ${added.origin}`));
      for (const line of added.summary) console.error(terminalSafeLine(line));
      console.error(terminalSafeLine(`${added.replaced ? "replaced" : "added"} worker ${added.name} (${added.spec.image})`));
    });
}
