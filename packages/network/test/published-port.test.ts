import { execFile } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { harnessUnavailable, startGuest } from "./harness.js";

const execFileP = promisify(execFile);
const skip = harnessUnavailable();
if (skip) console.warn(`SKIP published-port harness tests: ${skip}`);

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", () => r()));
  const p = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return p;
}

describe.skipIf(skip)("published ports (host 127.0.0.1:H -> guest :G)", () => {
  let env: Awaited<ReturnType<typeof startGuest>>;
  let hostPort: number;
  let closedHostPort: number;

  beforeAll(async () => {
    hostPort = await freePort();
    closedHostPort = await freePort();
    env = await startGuest({
      ports: [
        { hostPort, guestPort: 8080 },
        { hostPort: closedHostPort, guestPort: 8081 },
      ],
    });
    const www = join(env.guest.dir, "www");
    mkdirSync(www);
    writeFileSync(join(www, "index.html"), "served from inside the namespace\n");
    env.guest.spawn(["busybox", "httpd", "-f", "-p", "8080", "-h", www]);
    const deadline = Date.now() + 5000;
    while ((await env.guest.sh("nc -z 127.0.0.1 8080")).code !== 0) {
      if (Date.now() > deadline) throw new Error("guest httpd did not start");
      await new Promise((r) => setTimeout(r, 50));
    }
  });
  afterAll(async () => {
    await env?.close();
  });

  test("host curl reaches a server listening in the namespace", async () => {
    const { stdout } = await execFileP("curl", ["-sS", "-m", "5", `http://127.0.0.1:${hostPort}/index.html`]);
    expect(stdout).toBe("served from inside the namespace\n");
    const inbound = env.stack.snapshot().filter((f) => f.direction === "inbound");
    expect(inbound.length).toBeLessThanOrEqual(1);
  });

  test("a published port with nothing listening in the guest resets the host connection", async () => {
    const err = await execFileP("curl", ["-sS", "-m", "5", `http://127.0.0.1:${closedHostPort}/`]).then(
      () => undefined,
      (e: { code: number; stderr: string }) => e,
    );
    // The stack accepted on 127.0.0.1:H, then the guest's RST becomes a host RST: curl reports
    // "Connection reset by peer" (56) or, if it lands during connect, "Couldn't connect" (7).
    expect([7, 56]).toContain(err?.code);
    expect(err?.stderr).toMatch(/reset|refused|connect/i);
  });
});
