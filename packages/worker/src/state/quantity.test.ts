import { describe, expect, it } from "vitest";
import { parseCpus, parseMemoryBytes, parseQuantity, vcpusFor } from "./quantity.js";

describe("Kubernetes quantities", () => {
  it.each([
    ["500m", 0.5],
    ["2", 2],
    ["1.5", 1.5],
    ["512Mi", 512 * 2 ** 20],
    ["1Gi", 2 ** 30],
    ["1G", 1e9],
    ["128k", 128_000],
    ["1e3", 1000],
  ])("%s = %d", (text, value) => {
    expect(parseQuantity(text, "x")).toBe(value);
  });

  it.each(["12XB", "", "-1", "1.2.3", "Mi", "1 Gi", "0x10"])("rejects %j naming the field and value", (text) => {
    expect(() => parseQuantity(text, "memory")).toThrow(`invalid memory "${text}"`);
  });

  it("bounds cpus and memory", () => {
    expect(parseCpus("500m")).toBe(0.5);
    expect(() => parseCpus("0")).toThrow(/more than 0/);
    expect(() => parseMemoryBytes("1Ki")).toThrow(/at least 16Mi/);
    expect(() => parseMemoryBytes("20000000001m")).toThrow(/whole number/);
    expect(parseMemoryBytes("1Gi")).toBe(2 ** 30);
  });

  it("rounds vCPUs up, at least 1", () => {
    expect(vcpusFor(0.5)).toBe(1);
    expect(vcpusFor(2)).toBe(2);
    expect(vcpusFor(2.1)).toBe(3);
  });
});
