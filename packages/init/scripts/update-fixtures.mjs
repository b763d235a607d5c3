// Rewrites test/fixtures/{frames,env-contract}.json from the built encoders
// (run `pnpm build` first). Only for a deliberate, versioned protocol change:
// released hosts and guests are pinned to the checked-in files.
import { writeFileSync } from "node:fs";
import { protocol, encodeGuestEnv, encodeEnvFile, encodeKernelCmdlineEnv, decodeGuestEnv } from "../dist/index.js";

const fixtures = new URL("../test/fixtures/", import.meta.url);
const hex = (s) => Buffer.from(s, "utf8").toString("hex");

const messages = [
  ["ready", { type: "READY", stream: 0, protocol: 1, initVersion: "0.1.0", bootMs: 12.5, timings: [{ step: "mount:/proc", ms: 0.2, status: "ok" }, { step: "network", ms: 0, status: "skipped", detail: "III_INIT_IP not set" }] }],
  ["ping", { type: "PING", stream: 0, nonce: 7 }],
  ["pong", { type: "PONG", stream: 0, nonce: 7 }],
  ["log", { type: "LOG", stream: 0, level: "warn", message: "cgroup: memory controller unavailable" }],
  ["error", { type: "ERROR", stream: 3, code: "UNKNOWN_STREAM", message: "no exec on stream 3" }],
  ["exec-full", { type: "EXEC", stream: 1, argv: ["sh", "-c", "echo hi"], env: { A: "1", "B_ü": "x y" }, cwd: "/app", user: "1000:1000", tty: true, rows: 24, cols: 80, timeoutMs: 1000 }],
  ["exec-minimal", { type: "EXEC", stream: 2, argv: ["ls"] }],
  ["started", { type: "STARTED", stream: 1, pid: 42 }],
  ["stdin-binary", { type: "STDIN", stream: 1, dataHex: "00ff0a0d1b5b41" }],
  ["eof", { type: "EOF", stream: 1 }],
  ["stdout", { type: "STDOUT", stream: 1, dataHex: hex("hello\n") }],
  ["stderr", { type: "STDERR", stream: 1, dataHex: hex("oops\n") }],
  ["workload-stdout", { type: "STDOUT", stream: 0, dataHex: hex("listening\n") }],
  ["exit-code", { type: "EXIT", stream: 1, code: 7, signal: null, timedOut: false }],
  ["exit-timeout", { type: "EXIT", stream: 2, code: 143, signal: "SIGTERM", timedOut: true }],
  ["exit-spawn-error", { type: "EXIT", stream: 4, code: -1, signal: null, timedOut: false, error: "spawn nope ENOENT" }],
  ["exit-not-found", { type: "EXIT", stream: 5, code: -1, signal: null, timedOut: false, error: "nope: command not found (ENOENT)", shellStatus: 127 }],
  ["signal", { type: "SIGNAL", stream: 1, signal: "SIGINT" }],
  ["resize", { type: "RESIZE", stream: 1, rows: 40, cols: 120 }],
  ["credit", { type: "CREDIT", stream: 1, bytes: 262144 }],
  ["shutdown", { type: "SHUTDOWN", stream: 0, graceMs: 2000 }],
  ["restart-workload", { type: "RESTART_WORKLOAD", stream: 0, graceMs: 500 }],
  ["workload-started", { type: "WORKLOAD_STARTED", stream: 0, pid: 2, generation: 0 }],
  ["workload-exit", { type: "WORKLOAD_EXIT", stream: 0, code: 137, signal: "SIGKILL", timedOut: false, generation: 0, oomKilled: true, requested: false, escalated: false }],
];

const vectors = messages.map(([name, message]) => {
  const m = { ...message };
  if (m.dataHex !== undefined) {
    m.data = new Uint8Array(Buffer.from(m.dataHex, "hex"));
    delete m.dataHex;
  }
  return { name, message, hex: Buffer.from(protocol.encodeFrame(protocol.messageToFrame(m))).toString("hex") };
});
writeFileSync(new URL("frames.json", fixtures), `${JSON.stringify({ protocol: protocol.PROTOCOL_VERSION, vectors }, null, 2)}\n`);

const specs = [
  ["argv-minimal", { cmd: ["node", "/app/index.js"] }],
  ["shell-command", { cmd: "cd /workspace && exec npm run dev", workdir: "/workspace" }],
  [
    "full",
    {
      cmd: ["/usr/bin/python3", "-m", "worker", "--name", "a b"],
      workdir: "/srv/app",
      user: "app:app",
      network: { ip: "100.96.0.6", gateway: "100.96.0.5", prefixLength: 30, dns: ["100.96.0.5"], mtu: 1500 },
      memoryBytes: 536870912,
      pidsMax: 1024,
      cpus: 1.5,
      nofile: 65536,
      hostname: "image-resize",
      mounts: [
        { tag: "share0", path: "/data", readOnly: true },
        { tag: "share1", path: "/cache" },
      ],
      env: { NODE_ENV: "production", III_URL: "ws://host.iii.internal:49134" },
    },
  ],
];
const encode = specs.map(([name, spec]) => ({
  name,
  spec,
  env: encodeGuestEnv(spec),
  envFile: encodeEnvFile(spec),
  cmdline: encodeKernelCmdlineEnv(spec),
}));

const decodeEnvs = [
  ["defaults", { III_WORKER_CMD: '["/bin/app"]', HOME: "/", TERM: "linux" }],
  ["network-default-gateway", { III_WORKER_CMD: "sleep 1", III_INIT_IP: "100.96.0.10", III_INIT_CIDR: "30" }],
  ["shell-line-starting-with-bracket", { III_WORKER_CMD: "[ -f /x ] && run" }],
  ["scrubs-contract-vars", { III_WORKER_CMD: '["a"]', III_WORKER_MEM_BYTES: "67108864", III_INIT_NOFILE: "1024", III_INIT_NO_REBOOT: "1", III_INIT_HOSTNAME: "w1", III_MOUNTS: '[{"tag":"t","path":"/m","readOnly":false}]', III_URL: "ws://x", PATH: "/bin" }],
];
const decode = decodeEnvs.map(([name, env]) => ({ name, env, config: JSON.parse(JSON.stringify(decodeGuestEnv(env))) }));

const rejectEnvs = [
  ["cidr-40", { III_WORKER_CMD: '["a"]', III_INIT_IP: "100.96.0.2", III_INIT_CIDR: "40" }],
  ["missing-cmd", { III_INIT_IP: "100.96.0.2" }],
  ["mounts-not-json", { III_WORKER_CMD: '["a"]', III_MOUNTS: "share0:/data:ro" }],
  ["mounts-as-map", { III_WORKER_CMD: '["a"]', III_MOUNTS: '{"share0":"/data"}' }],
  ["mounts-relative-path", { III_WORKER_CMD: '["a"]', III_MOUNTS: '[{"tag":"s","path":"data"}]' }],
  ["bad-ip", { III_WORKER_CMD: '["a"]', III_INIT_IP: "100.96.0.256" }],
  ["argv-not-strings", { III_WORKER_CMD: '["a", 1]' }],
  ["relative-workdir", { III_WORKER_CMD: '["a"]', III_WORKER_WORKDIR: "app" }],
  ["mem-not-integer", { III_WORKER_CMD: '["a"]', III_WORKER_MEM_BYTES: "64Mi" }],
  ["mtu-too-small", { III_WORKER_CMD: '["a"]', III_INIT_MTU: "20" }],
];
const reject = rejectEnvs.map(([name, env]) => {
  try {
    decodeGuestEnv(env);
  } catch (err) {
    return { name, env, message: err.message, exitCode: err.exitCode };
  }
  throw new Error(`${name} was accepted`);
});
writeFileSync(new URL("env-contract.json", fixtures), `${JSON.stringify({ encode, decode, reject }, null, 2)}\n`);
console.log(`wrote ${vectors.length} frame vectors, ${encode.length + decode.length + reject.length} env cases`);
