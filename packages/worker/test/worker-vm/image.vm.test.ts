import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeLayout } from "../images/fixtures/oci-writer.js";
import { missingTools, skopeoPush, startRegistry, type TestRegistry } from "../images/fixtures/registry.js";
import { busyboxRootfs, Project, vmSkipReason, waitFor } from "./harness.js";

const skip = vmSkipReason() ?? missingTools();
if (skip) console.warn(`[vm] skipping the registry-image VM test: ${skip}`);

describe.skipIf(!!skip)("a worker from a registry image (vm)", () => {
  let registry: TestRegistry;
  let dir: string;
  const p = new Project();

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "iii-vm-img-"));
    registry = await startRegistry({ kind: "none" });
    const base = execFileSync("tar", ["-C", busyboxRootfs(), "--numeric-owner", "-cf", "-", "."], { maxBuffer: 64 * 1024 * 1024 });
    await writeLayout(join(dir, "layout"), "1", {
      layers: [
        { tar: base },
        {
          entries: [
            { name: "etc/passwd", content: "root:x:0:0:root:/root:/bin/sh\napp:x:1234:2345:app:/home/app:/bin/sh\n" },
            { name: "etc/group", content: "root:x:0:\napp:x:2345:\n" },
            { name: "app/", type: "directory", mode: 0o755, uid: 1234, gid: 2345 },
            { name: "home/app/", type: "directory", mode: 0o755, uid: 1234, gid: 2345 },
          ],
        },
      ],
      config: {
        Entrypoint: ["/bin/sh", "-c"],
        Cmd: ['echo "user=$(id -u):$(id -g) cwd=$(pwd) greeting=$GREETING home=$HOME"'],
        User: "app",
        WorkingDir: "/app",
        Env: ["GREETING=from-image", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
      },
    });
    await skopeoPush(`oci:${join(dir, "layout")}:1`, registry, "test/app:1");
  }, 300_000);
  afterAll(async () => {
    await p.dispose();
    await registry?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("add pulls from an insecure registry; the worker runs Entrypoint+Cmd as its User in its WorkingDir with its Env", async () => {
    const ref = `${registry.host}/test/app:1`;
    const refused = await p.cli(["add", ref, "--name", "app"]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/HTTP|TLS|https/i);
    const added = await p.cli(["add", ref, "--name", "app", "--insecure-registry", registry.host]);
    expect(added.code, added.stderr).toBe(0);
    expect(added.stderr).toContain("added worker app");
    const start = await p.cli(["start", "app"]);
    expect(start.code, start.stderr).toBe(0);
    await waitFor(() => p.read("managed/app/logs/stdout.log").includes("user="), 30_000, "the workload's line");
    expect(p.read("managed/app/logs/stdout.log")).toBe("user=1234:2345 cwd=/app greeting=from-image home=/home/app\n");
    const blobsBefore = registry.blobGets();
    const again = await p.cli(["add", ref, "--name", "app2", "--insecure-registry", registry.host]);
    expect(again.code, again.stderr).toBe(0);
    expect(registry.blobGets()).toBe(blobsBefore);
  }, 180_000);
});
