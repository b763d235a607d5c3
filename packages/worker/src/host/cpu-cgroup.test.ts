import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { cgroupNameFor, createCpuCgroup, findCpuHierarchy } from "./cpu-cgroup.js";

describe("finding the host's cpu controller", () => {
  it("takes the cgroup v1 cpu hierarchy when the unified one has no cpu controller (hybrid: this machine's layout)", () => {
    const mountinfo = [
      "30 25 0:26 / /nonexistent-iii/unified rw,relatime - cgroup2 cgroup2 rw",
      "31 25 0:27 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu",
      "32 25 0:28 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory",
    ].join("\n");
    // the unified mount offers no cpu controller (here: no cgroup.controllers at all), so v1's cpu hierarchy is it
    expect(findCpuHierarchy(mountinfo)).toEqual({ version: 1, mount: "/sys/fs/cgroup/cpu" });
  });

  it("reads v1 mounts whose options join controllers (cpu,cpuacct) and unescapes mount paths", () => {
    expect(findCpuHierarchy("31 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct")).toEqual({ version: 1, mount: "/sys/fs/cgroup/cpu,cpuacct" });
    expect(findCpuHierarchy("31 25 0:27 / /mnt/my\\040cg rw - cgroup cgroup rw,cpuacct,cpu")).toEqual({ version: 1, mount: "/mnt/my cg" });
    expect(findCpuHierarchy("31 25 0:27 / /sys/fs/cgroup/cpuacct rw - cgroup cgroup rw,cpuacct")).toBeUndefined();
  });

  it("names a VM's group after its managed dir: stable, and distinct for distinct workers", () => {
    expect(cgroupNameFor("/h/managed/p/a")).toBe(cgroupNameFor("/h/managed/p/a"));
    expect(cgroupNameFor("/h/managed/p/a")).not.toBe(cgroupNameFor("/h/managed/p/b"));
    expect(cgroupNameFor("/h/managed/p/a")).toMatch(/^vm-[0-9a-f]{16}$/);
  });
});

const hierarchy = process.geteuid?.() === 0 ? findCpuHierarchy() : undefined;
if (!hierarchy) console.warn("[host] skipping the real cgroup test: not root, or no cpu controller mounted");

describe.skipIf(!hierarchy)("a VM's host cgroup, on this host's real cpu controller", () => {
  it("is not left behind when the kernel refuses its quota", async () => {
    const name = `vm-test-${process.pid}`;
    // 10^9 CPUs: a quota past the kernel's maximum, refused with EINVAL after the group was made.
    await expect(createCpuCgroup(name, 1e9, hierarchy)).rejects.toMatchObject({ code: "CpuLimitUnsupported" });
    expect(existsSync(join(hierarchy!.mount, "iii", name))).toBe(false);
    const group = await createCpuCgroup(name, 0.5, hierarchy);
    expect(existsSync(group.dir)).toBe(true);
    await group.remove();
    expect(existsSync(group.dir)).toBe(false);
  });
});
