import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FilesystemError, mountPassthrough, type MountHandle } from "../src/index.js";
import { MountServer } from "../src/mount/client.js";
import { fuse, rmrf, sh, shOk, tempDir } from "./helpers.js";

const CLI = fileURLToPath(new URL("../dist/cli.js", import.meta.url));

function mounted(mnt: string): boolean {
  return fs.readFileSync("/proc/self/mountinfo", "utf8").split("\n").some((l) => l.split(" ")[4] === mnt);
}

async function waitFor(cond: () => boolean, timeoutMs: number): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return cond();
}

/** Starts `iii-fs mount ...` and resolves once it printed "mounted". */
function startCli(args: string[]): Promise<{ child: ChildProcess; exited: Promise<number | null>; stderr: () => string }> {
  if (!fs.existsSync(CLI)) throw new Error(`${CLI} is missing: run \`pnpm --filter @iii/filesystem build\` before the tests`);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, "mount", ...args], { cwd: "/", stdio: ["ignore", "pipe", "pipe"] });
    let err = "";
    child.stderr?.on("data", (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
    child.stdout?.on("data", (d: Buffer) => {
      if (d.toString().includes("mounted ")) resolve({ child, exited, stderr: () => err });
    });
    void exited.then((code) => reject(new Error(`iii-fs exited ${code} before mounting: ${err}`)));
  });
}

describe.skipIf(!fuse.ok)("mount lifecycle and CLI", () => {
  let base: string;
  let root: string;
  const children: ChildProcess[] = [];
  const handles: MountHandle[] = [];

  beforeAll(() => {
    base = tempDir("lifecycle");
    root = path.join(base, "root");
    fs.mkdirSync(root);
    fs.writeFileSync(path.join(root, "hello"), "hello\n");
  });

  afterAll(async () => {
    for (const h of handles) await h.unmount().catch(() => undefined);
    for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
    for (const d of fs.existsSync(base) ? fs.readdirSync(base) : []) {
      const p = path.join(base, d);
      if (mounted(p)) await sh(`fusermount -uz "${p}"`, "/");
    }
    if (base) rmrf(base);
  });

  it("kill -9 of the owner without auto_unmount leaves a stale mount; mounting again cleans it up", async () => {
    const mnt = path.join(base, "stale");
    fs.mkdirSync(mnt);
    const cli = await startCli([root, mnt, "--no-auto-unmount"]);
    children.push(cli.child);
    expect(await shOk("cat hello", mnt)).toBe("hello\n");
    cli.child.kill("SIGKILL");
    await cli.exited;
    expect(mounted(mnt)).toBe(true);
    const stale = await sh("ls", mnt);
    expect(stale.stderr).toMatch(/Transport endpoint is not connected/);
    const h = await mountPassthrough({ root, mountpoint: mnt });
    handles.push(h);
    expect(await shOk("cat hello", mnt)).toBe("hello\n");
    await h.unmount();
    expect(mounted(mnt)).toBe(false);
  });

  it("kill -9 with auto_unmount: the kernel mount goes away and remounting succeeds", async () => {
    const mnt = path.join(base, "auto");
    fs.mkdirSync(mnt);
    const cli = await startCli([root, mnt]);
    children.push(cli.child);
    expect(await shOk("cat hello", mnt)).toBe("hello\n");
    cli.child.kill("SIGKILL");
    await cli.exited;
    // fusermount's auto_unmount watchdog normally removes the mount within ms; under
    // heavy load it has been seen to lag, and then the stale-mount cleanup must cope.
    if (!(await waitFor(() => !mounted(mnt), 5000))) console.log("[lifecycle] auto_unmount still pending after 5 s; remounting over it");
    await using h = await mountPassthrough({ root, mountpoint: mnt });
    expect(h.mounted).toBe(true);
    expect(await shOk("cat hello", mnt)).toBe("hello\n");
  });

  it("children spawned by an in-process owner do not keep its FUSE connection alive after kill -9", async () => {
    const mnt = path.join(base, "inherit");
    fs.mkdirSync(mnt);
    const owner = path.join(base, "owner.mjs");
    const index = fileURLToPath(new URL("../dist/index.js", import.meta.url));
    fs.writeFileSync(
      owner,
      `import { mountPassthrough } from ${JSON.stringify(index)};
import { spawn } from "node:child_process";
await mountPassthrough({ root: ${JSON.stringify(root)}, mountpoint: ${JSON.stringify(mnt)}, isolation: "in-process" });
const c = spawn("sleep", ["30"], { stdio: "ignore", detached: true });
c.unref();
console.log("ready " + c.pid);
`,
    );
    const child = spawn(process.execPath, [owner], { cwd: "/", stdio: ["ignore", "pipe", "inherit"] });
    children.push(child);
    const line = await new Promise<string>((r) => child.stdout?.on("data", (d: Buffer) => r(d.toString())));
    const sleeper = Number(/ready (\d+)/.exec(line)?.[1]);
    try {
      const fds = await shOk(`ls -l /proc/${sleeper}/fd | grep -c fuse || true`, "/");
      expect(fds.trim()).toBe("0");
      child.kill("SIGKILL");
      // A child holding the connection would keep the mount serving forever. The connection is gone once the
      // mount answers ENOTCONN (or is unmounted): that is this test's property. The unmount itself is
      // fusermount's auto_unmount watchdog's, which lagged over 60 s in a full CI run with VMs on both cores
      // (and > 20 s before); if neither happened, say what the watchdog is doing.
      const gone = await waitFor(() => !mounted(mnt) || statErrno(mnt) === "ENOTCONN", 60_000);
      const watchdog = gone ? "" : await shOk(`ps -eo pid,stat,wchan:32,etime,cmd | grep '[f]usermount.*${mnt}' || echo 'no fusermount for it'`, "/");
      expect(gone, `still connected after 60 s; watchdog: ${watchdog}`).toBe(true);
    } finally {
      try {
        process.kill(sleeper, "SIGKILL");
      } catch {
        // it ended by itself (sleep 30): an ESRCH here must not hide the assertion above
      }
      // the watchdog's unmount, however late, or ours
      if (mounted(mnt)) await shOk(`fusermount -u -z "${mnt}" || umount -l "${mnt}" || true`, "/");
    }
  });

  it("an external fusermount -u is detected: event, typed error, closed promise", async () => {
    const mnt = path.join(base, "external");
    fs.mkdirSync(mnt);
    const h = await mountPassthrough({ root, mountpoint: mnt, watchIntervalMs: 100 });
    handles.push(h);
    const errors: FilesystemError[] = [];
    h.on("error", (e) => errors.push(e));
    await shOk(`fusermount -u "${mnt}"`, "/");
    const reason = await h.closed;
    expect(reason.external).toBe(true);
    expect(reason.external && reason.error.code).toBe("ExternalUnmount");
    expect(errors.map((e) => e.code)).toEqual(["ExternalUnmount"]);
    expect(h.mounted).toBe(false);
    await h.unmount();
    expect(mounted(mnt)).toBe(false);
  });

  it("refuses to mount over a live mount and reports typed errors", async () => {
    const mnt = path.join(base, "busy");
    fs.mkdirSync(mnt);
    const h = await mountPassthrough({ root, mountpoint: mnt });
    handles.push(h);
    await expect(mountPassthrough({ root, mountpoint: mnt })).rejects.toMatchObject({ code: "MountpointBusy" });
    const spare = path.join(base, "spare");
    fs.mkdirSync(spare);
    await expect(mountPassthrough({ root: path.join(base, "nope"), mountpoint: spare })).rejects.toMatchObject({ code: "RootNotFound" });
    await expect(mountPassthrough({ root, mountpoint: path.join(base, "missing") })).rejects.toMatchObject({ code: "MountpointInvalid" });
    await expect(mountPassthrough({ mountpoint: mnt } as never)).rejects.toMatchObject({ code: "InvalidOptions" });
    await expect(mountPassthrough({ root, mountpoint: path.join(root) })).rejects.toMatchObject({ code: "InvalidOptions" });
    await expect(mountPassthrough({ root, mountpoint: mnt, cache: { attrTimeoutSec: -1 } })).rejects.toMatchObject({ code: "InvalidOptions" });
    await h.unmount();
    expect(mounted(mnt)).toBe(false);
    // Stats count real traffic.
    expect(h.stats().ops.getattr ?? 0).toBeGreaterThan(0);
  });

  it("isolation \"process\": the caller may block on the mount; kill -9 of the server is reported", async () => {
    const mnt = path.join(base, "isolated");
    fs.mkdirSync(mnt);
    const h = await mountPassthrough({ root, mountpoint: mnt, isolation: "process", virtualFiles: { "/.iii/token": { content: new Uint8Array([7, 8]) } } });
    handles.push(h);
    expect(h.serverPid).not.toBe(process.pid);
    // Synchronous calls on the mount from this process: would deadlock in-process.
    expect(fs.readFileSync(path.join(mnt, "hello"), "utf8")).toBe("hello\n");
    expect([...fs.readFileSync(path.join(mnt, ".iii/token"))]).toEqual([7, 8]);
    expect(execFileSync("cat", ["hello"], { cwd: mnt, encoding: "utf8" })).toBe("hello\n");
    await new Promise((r) => setTimeout(r, 400));
    expect(h.stats().ops.read ?? 0).toBeGreaterThan(0);
    process.kill(h.serverPid, "SIGKILL");
    const reason = await h.closed;
    expect(reason.external && reason.error.code).toBe("ServerExited");
    if (!(await waitFor(() => !mounted(mnt), 5000))) console.log("[lifecycle] auto_unmount still pending after 5 s; remounting over it");
    const again = await mountPassthrough({ root, mountpoint: mnt, isolation: "process" });
    expect(fs.readFileSync(path.join(mnt, "hello"), "utf8")).toBe("hello\n");
    await again.unmount();
    expect(mounted(mnt)).toBe(false);
    expect(again.mounted).toBe(false);
  });

  it("an unmount the server never finishes is bounded: typed error with its threads, server killed, no mount left", async () => {
    // Before, unmount() waited for the server with no bound (a CI afterAll hit its 60 s hook timeout so).
    const mnt = path.join(base, "stuck");
    fs.mkdirSync(mnt);
    const h = await mountPassthrough({ root, mountpoint: mnt, isolation: "process", unmountTimeoutMs: 1500 });
    handles.push(h);
    expect(fs.readFileSync(path.join(mnt, "hello"), "utf8")).toBe("hello\n");
    process.kill(h.serverPid, "SIGSTOP");
    const started = Date.now();
    const err = await h.unmount().then(() => null, (e: unknown) => e);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(err).toBeInstanceOf(FilesystemError);
    expect((err as FilesystemError).code).toBe("UnmountTimeout");
    // Where it waited, read before the kill: every thread stopped (T), with its wait channel.
    expect((err as Error).message).toMatch(new RegExp(`process ${h.serverPid}, \\d+ threads:`));
    expect((err as Error).message).toMatch(/state=T wchan=\S+/);
    expect(await waitFor(() => !mounted(mnt), 5000)).toBe(true);
    expect(h.mounted).toBe(false);
    expect(await h.closed).toEqual({ external: false });
    expect(() => process.kill(h.serverPid, 0)).toThrow();
    // Idempotent after the timeout, and the mountpoint is usable again.
    await h.unmount();
    const again = await mountPassthrough({ root, mountpoint: mnt, isolation: "process" });
    expect(fs.readFileSync(path.join(mnt, "hello"), "utf8")).toBe("hello\n");
    await again.unmount();
  });

  it("a mount the server never reports is bounded: typed error with its threads, server killed", async () => {
    // Before, mount() waited with no bound for a server that neither answered nor exited.
    const mnt = path.join(base, "never");
    fs.mkdirSync(mnt);
    const server = MountServer.start();
    process.kill(server.pid, "SIGSTOP");
    const started = Date.now();
    const err = await server.mount({ root, mountpoint: mnt, mountTimeoutMs: 1500 }).then(() => null, (e: unknown) => e);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(err).toBeInstanceOf(FilesystemError);
    expect((err as FilesystemError).code).toBe("MountFailed");
    expect((err as Error).message).toMatch(new RegExp(`pid ${server.pid}\\) did not mount ${mnt} within 1500 ms; killed it`));
    expect((err as Error).message).toMatch(/state=T wchan=\S+/);
    expect(() => process.kill(server.pid, 0)).toThrow();
    expect(mounted(mnt)).toBe(false);
    const again = await mountPassthrough({ root, mountpoint: mnt, isolation: "process" });
    expect(fs.readFileSync(path.join(mnt, "hello"), "utf8")).toBe("hello\n");
    await again.unmount();
  });

  it("CLI: layered mount with --inject and --ro, `iii-fs unmount`, SIGTERM", async () => {
    const lower = path.join(base, "lower");
    const upper = path.join(base, "upper");
    const mnt = path.join(base, "cli");
    for (const d of [lower, upper, mnt]) fs.mkdirSync(d);
    fs.writeFileSync(path.join(lower, "from-lower"), "lower\n");
    const init = path.join(base, "init");
    fs.writeFileSync(init, "#!/bin/sh\necho init\n");
    const cli = await startCli(["--lower", lower, "--upper", upper, mnt, "--inject", `/init.krun=${init}`]);
    children.push(cli.child);
    expect(await shOk("cat from-lower; ./init.krun; echo new > f; ls", mnt)).toBe("lower\ninit\nf\nfrom-lower\ninit.krun\n");
    expect(fs.readFileSync(path.join(upper, "f"), "utf8")).toBe("new\n");
    const un = await sh(`node "${CLI}" unmount "${mnt}"`, "/");
    expect(un.code).toBe(0);
    expect(await cli.exited).toBe(3);
    expect(cli.stderr()).toMatch(/unmounted by someone else/);

    const ro = await startCli([root, mnt, "--ro"]);
    children.push(ro.child);
    const w = await sh("echo x > y 2>&1", mnt);
    expect(w.stdout + w.stderr).toMatch(/Read-only file system/);
    ro.child.kill("SIGTERM");
    expect(await ro.exited).toBe(0);
    expect(mounted(mnt)).toBe(false);

    const bad = await sh(`node "${CLI}" mount "${root}"`, "/");
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/usage/);
  });
});

/**
 * "ENOTCONN" when stat(path) says the FUSE connection is gone, else undefined. In a child bounded to 2 s: on a
 * connection someone still holds, with its server dead, a stat in this process would block for good.
 */
function statErrno(p: string): string | undefined {
  try {
    execFileSync("timeout", ["2", "stat", p], { stdio: ["ignore", "ignore", "pipe"] });
    return undefined;
  } catch (error) {
    return /Transport endpoint is not connected/.test(String((error as { stderr?: Buffer }).stderr ?? "")) ? "ENOTCONN" : undefined;
  }
}
