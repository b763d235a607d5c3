// The pure pieces of the guest init: user resolution, wait statuses, /etc files, the worker's memory cap.
import { describe, expect, it } from "vitest";
import { resolveUserSpec, UserResolveError } from "./users.js";
import { hostsFile, resolvConf } from "./network.js";
import { decodeWaitStatus } from "./wait-status.js";
import { INIT_MEMORY_HEADROOM, workerMemoryMax } from "./cgroup.js";

const passwd = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001:App:/home/app:/bin/sh\nbroken line\nnohome:x:1002:1002:::/bin/sh\n";
const group = "root:x:0:\napp:x:1001:\nstaff:x:50:app\n";

describe("resolveUserSpec", () => {
  const readGroup = () => group;
  it("resolves names, numbers and groups against the image's files", () => {
    expect(resolveUserSpec(null, passwd, readGroup)).toEqual({ uid: 0, gid: 0, name: "root", home: "/root" });
    expect(resolveUserSpec("app", passwd, readGroup)).toEqual({ uid: 1000, gid: 1001, name: "app", home: "/home/app" });
    expect(resolveUserSpec("app:staff", passwd, readGroup)).toMatchObject({ uid: 1000, gid: 50 });
    expect(resolveUserSpec("1000:7", passwd, readGroup)).toMatchObject({ uid: 1000, gid: 7, name: "app" });
    // Unknown numeric ids are fine (distroless images have no passwd entry).
    expect(resolveUserSpec("65532", "", () => "")).toEqual({ uid: 65532, gid: 65532, name: null, home: "/" });
    expect(resolveUserSpec("nohome", passwd, readGroup).home).toBe("/");
  });
  it("names what is missing", () => {
    expect(() => resolveUserSpec("ghost", passwd, readGroup)).toThrow(new UserResolveError('user "ghost" not found in /etc/passwd'));
    expect(() => resolveUserSpec("app:ghosts", passwd, readGroup)).toThrow('group "ghosts" not found in /etc/group');
  });
  it("reads /etc/group only for a group given by name, once", () => {
    const reads: string[] = [];
    const counting = (spec: string | null) => {
      reads.length = 0;
      const user = resolveUserSpec(spec, passwd, () => {
        reads.push(spec ?? "null");
        return group;
      });
      return { gid: user.gid, reads: reads.length };
    };
    expect([null, "app", "root", "1000", "1000:7", "app:50", "65532:0"].map(counting)).toEqual([
      { gid: 0, reads: 0 },
      { gid: 1001, reads: 0 },
      { gid: 0, reads: 0 },
      { gid: 1001, reads: 0 },
      { gid: 7, reads: 0 },
      { gid: 50, reads: 0 },
      { gid: 0, reads: 0 },
    ]);
    expect(counting("app:staff")).toEqual({ gid: 50, reads: 1 });
    expect(counting("1000:app")).toEqual({ gid: 1001, reads: 1 });
    // A user that does not exist fails before any group is looked up.
    expect(() => resolveUserSpec("ghost:staff", passwd, () => {
      throw new Error("read /etc/group for a user that does not exist");
    })).toThrow('user "ghost" not found');
  });
});

describe("/etc files", () => {
  it("maps host.iii.internal to the gateway and keeps localhost local", () => {
    expect(hostsFile("w1", "100.96.0.5")).toBe(
      "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\tw1\n100.96.0.5\thost.iii.internal\n",
    );
    expect(hostsFile(null, null)).toBe("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    expect(hostsFile("w1", "100.96.0.5", { ipv6: false })).toBe("127.0.0.1\tlocalhost\n127.0.1.1\tw1\n100.96.0.5\thost.iii.internal\n");
    expect(resolvConf(["100.96.0.5", "1.1.1.1"])).toBe("nameserver 100.96.0.5\nnameserver 1.1.1.1\n");
  });
});

describe("decodeWaitStatus", () => {
  it("is the code, or 128 + the signal number", () => {
    expect(decodeWaitStatus(7 << 8)).toEqual({ code: 7, signal: null });
    expect(decodeWaitStatus(0)).toEqual({ code: 0, signal: null });
    expect(decodeWaitStatus(9)).toEqual({ code: 137, signal: "SIGKILL" });
    expect(decodeWaitStatus(15)).toEqual({ code: 143, signal: "SIGTERM" });
    // A core dump (0x80) does not change the status.
    expect(decodeWaitStatus(0x80 | 11)).toEqual({ code: 139, signal: "SIGSEGV" });
  });
});

describe("workerMemoryMax", () => {
  const MiB = 1024 * 1024;
  it("keeps headroom for init: at most 96 MiB, at most a quarter of RAM", () => {
    expect(INIT_MEMORY_HEADROOM).toBe(96 * MiB);
    // A 512 MiB VM (MemTotal ~480 MiB): a 512 MiB request is capped, a 128 MiB one is kept.
    expect(workerMemoryMax(512 * MiB, 480 * MiB)).toEqual({ max: 384 * MiB, headroom: 96 * MiB });
    expect(workerMemoryMax(128 * MiB, 480 * MiB)).toEqual({ max: 128 * MiB, headroom: 96 * MiB });
    // No request: the cap alone.
    expect(workerMemoryMax(null, 480 * MiB)).toEqual({ max: 384 * MiB, headroom: 96 * MiB });
    // A small VM keeps three quarters for the worker.
    expect(workerMemoryMax(128 * MiB, 128 * MiB)).toEqual({ max: 96 * MiB, headroom: 32 * MiB });
    expect(workerMemoryMax(64 * MiB, null)).toEqual({ max: 64 * MiB, headroom: null });
  });
});
