import { execFile } from "node:child_process";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { expect, it } from "vitest";

// The README's second demo command, as a user runs it (it builds both examples and cleans up after itself).
const REPO = fileURLToPath(new URL("../../../../", import.meta.url));

const freePort = () =>
  new Promise<number>((resolve) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });

it("scripts/demo-wasm.sh: the component registers with the engine stand-in and is invoked; the p1 module completes", async () => {
  const { stdout, stderr } = await promisify(execFile)("bash", [`${REPO}scripts/demo-wasm.sh`], {
    env: { ...process.env, III_DEMO_PORT: String(await freePort()) },
    timeout: 170_000,
  });
  expect(stdout).toMatch(/engine-standin \| function registered wasm::greet/);
  expect(stdout).toMatch(/engine-standin \| worker \w+ is greet \(node iii-sdk [\d.]+, isolation wasm\)/);
  expect(stdout).toMatch(/engine-standin \| invoked wasm::greet → \{"message":"Hello, from the demo!","from":"wasm-worker"\}/);
  expect(stdout).toMatch(/hello from a WASI preview 1 module\narg: one\narg: two\n/);
  expect(stdout).toMatch(/hello\s+wasm:\S+hello\.wasm\s+completed \(exit 0\)/);
  expect(stderr).toMatch(/demo: done/);
}, 180_000);
