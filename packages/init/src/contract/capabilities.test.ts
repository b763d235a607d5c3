import { describe, expect, it } from "vitest";
import { CAPABILITY_NAMES, capabilityMask, capabilityName, DEFAULT_CAPABILITIES, resolveCapabilities } from "./capabilities.js";

describe("workload capabilities", () => {
  it("numbers the names as linux/capability.h does", () => {
    expect(CAPABILITY_NAMES.indexOf("SYS_ADMIN")).toBe(21);
    expect(CAPABILITY_NAMES.indexOf("SYS_RAWIO")).toBe(17);
    expect(CAPABILITY_NAMES.indexOf("CHECKPOINT_RESTORE")).toBe(40);
  });

  it("keeps Docker's default set, the bounding set a80425fb the isolation VM test reads", () => {
    expect(capabilityMask(DEFAULT_CAPABILITIES).toString(16)).toBe("a80425fb");
    expect(capabilityMask(CAPABILITY_NAMES)).toBe(2 ** 41 - 1);
    expect(capabilityMask([])).toBe(0);
  });

  it("reads a name with or without CAP_, in any case", () => {
    expect(capabilityName("net_admin")).toBe("NET_ADMIN");
    expect(capabilityName("CAP_SYS_TIME")).toBe("SYS_TIME");
    expect(capabilityName("NET_ADMIN ")).toBe("NET_ADMIN");
    expect(capabilityName("ALL")).toBeUndefined();
    expect(capabilityName("SYS_EVERYTHING")).toBeUndefined();
  });

  it("adds and drops as Docker does", () => {
    expect(resolveCapabilities([], [])).toEqual(DEFAULT_CAPABILITIES);
    const plus = resolveCapabilities(["NET_ADMIN"], ["NET_RAW"]);
    expect(plus).toContain("NET_ADMIN");
    expect(plus).not.toContain("NET_RAW");
    expect(plus).toHaveLength(DEFAULT_CAPABILITIES.length);
    // ALL dropped: exactly the adds; ALL added: everything but the drops
    expect(resolveCapabilities(["CHOWN", "KILL"], ["ALL"])).toEqual(["CHOWN", "KILL"]);
    expect(resolveCapabilities([], ["ALL"])).toEqual([]);
    const all = resolveCapabilities(["ALL"], ["SYS_ADMIN"]);
    expect(all).toHaveLength(CAPABILITY_NAMES.length - 1);
    expect(all).not.toContain("SYS_ADMIN");
    // sorted by number, no duplicates
    expect(resolveCapabilities(["SYS_TIME", "CHOWN"], ["ALL"])).toEqual(["CHOWN", "SYS_TIME"]);
    expect(resolveCapabilities(["CHOWN"], [])).toEqual(DEFAULT_CAPABILITIES);
  });
});
