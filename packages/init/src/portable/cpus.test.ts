import { describe, expect, it } from "vitest";
import { offlineCpus, parseCpuList } from "./cpus.js";

describe("sysfs CPU lists", () => {
  it("parses ranges, singles and the empty list", () => {
    expect(parseCpuList("0\n")).toEqual([0]);
    expect(parseCpuList("0-3,6,8-9\n")).toEqual([0, 1, 2, 3, 6, 8, 9]);
    expect(parseCpuList("\n")).toEqual([]);
    expect(parseCpuList("3,1-2")).toEqual([1, 2, 3]);
  });

  it("refuses what is not a CPU list", () => {
    for (const bad of ["a", "1-", "-1", "3-1", "0,,1", "0 1", "99999"]) expect(parseCpuList(bad), bad).toBeNull();
  });

  it("names the present CPUs that are not online", () => {
    expect(offlineCpus("0-1\n", "0\n")).toEqual([1]);
    expect(offlineCpus("0-3\n", "0,2\n")).toEqual([1, 3]);
    expect(offlineCpus("0-1\n", "0-1\n")).toEqual([]);
    expect(offlineCpus("0-1\n", "x")).toBeNull();
  });
});
