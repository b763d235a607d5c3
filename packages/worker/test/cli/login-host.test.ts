import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";

const CLI = join(import.meta.dirname, "../../dist/cli.js");
const dir = mkdtempSync(join(tmpdir(), "iii-login-host-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function login(args: string[], home: string): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, "login", ...args, "-u", "alice", "--password-stdin"], {
      cwd: dir,
      // Any registry request (a verify that should not happen) goes to a refused local port, never out.
      env: { ...process.env, III_HOME: home, https_proxy: "http://127.0.0.1:9", HTTPS_PROXY: "http://127.0.0.1:9", http_proxy: "http://127.0.0.1:9", HTTP_PROXY: "http://127.0.0.1:9", no_proxy: "", NO_PROXY: "" },
      stdio: ["pipe", "ignore", "pipe"],
    });
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stderr }));
    child.stdin.end("lan-s3cret\n");
  });
}

describe("login names a registry host", () => {
  it("a bare name (a Docker Hub namespace in references) is refused, not stored and verified as Docker Hub's password", async () => {
    const home = join(dir, "h1");
    // Without --no-verify the old code sent the password to Docker Hub's token service: the refusal comes first.
    for (const args of [["myregistry", "--no-verify"], ["myregistry"], ["ghcr.io/org", "--no-verify"]]) {
      const run = await login(args, home);
      expect(run.stderr).toMatch(/^iii-worker: login "(myregistry|ghcr\.io\/org)": not a registry host \(in an image reference it is a Docker Hub namespace\); name the registry as host\.domain, host:port or localhost \[InvalidReference\]\n$/);
      expect(run.code).toBe(1);
    }
    expect(existsSync(join(home, "auth.json"))).toBe(false);
  });

  it("hosts with a dot or a port, localhost and docker.io are stored under their own name", async () => {
    const home = join(dir, "h2");
    for (const host of ["registry.lan", "myregistry:5000", "localhost", "docker.io"]) {
      const run = await login([host, "--no-verify"], home);
      expect(run.code, run.stderr).toBe(0);
    }
    const auths = Object.keys((JSON.parse(readFileSync(join(home, "auth.json"), "utf8")) as { auths: object }).auths);
    expect(auths.sort()).toEqual(["https://index.docker.io/v1/", "localhost", "myregistry:5000", "registry.lan"]);
  });
});
