import { describe, expect, it } from "vitest";
import { DISK_MIN_BYTES, parseCpus, parseDiskBytes, parseMemoryBytes, parseQuantity, vcpusFor } from "./quantity.js";

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
    // too much, wherever it comes from (add, or a hand-edited iii.workers.yaml): not "at least 16Mi" for Infinity
    expect(() => parseMemoryBytes("1e400")).toThrow('invalid memory "1e400": must be at most 4Pi');
    expect(() => parseMemoryBytes("5Pi")).toThrow(/at most 4Pi/);
    expect(() => parseCpus("256")).toThrow("a worker's VM has at most 255 vCPUs");
    expect(() => parseCpus("255.5")).toThrow(/at most 255 vCPUs/);
    expect(parseCpus("255")).toBe(255);
    expect(() => parseMemoryBytes("20000000001m")).toThrow(/whole number/);
    expect(parseMemoryBytes("1Gi")).toBe(2 ** 30);
  });

  it("reads --disk as bytes, at least 64Mi, and says what was wrong otherwise", () => {
    expect(parseDiskBytes("1Gi")).toBe(1_073_741_824);
    expect(parseDiskBytes("64Mi")).toBe(DISK_MIN_BYTES);
    expect(parseDiskBytes("10G")).toBe(10e9);
    expect(parseDiskBytes("4Pi")).toBe(2 ** 52);
    // A forgotten unit is bytes, far below the minimum, and the message says which unit was probably meant.
    expect(() => parseDiskBytes("10")).toThrow('invalid disk "10": must be at least 64Mi (a bare number is bytes: did you mean 10Gi?)');
    expect(() => parseDiskBytes("63Mi")).toThrow('invalid disk "63Mi": must be at least 64Mi');
    expect(() => parseDiskBytes("-1Gi")).toThrow('invalid disk "-1Gi": expected a Kubernetes quantity');
    expect(() => parseDiskBytes("abc")).toThrow('invalid disk "abc": expected a Kubernetes quantity');
    expect(() => parseDiskBytes("100000001m")).toThrow(/whole number of bytes/);
    expect(() => parseDiskBytes("5Pi")).toThrow(/at most 4Pi/);
    expect(() => parseDiskBytes("1e400")).toThrow(/at most 4Pi/);
    for (const bad of ["10", "-1Gi", "abc", "63Mi", "5Pi"]) expect(() => parseDiskBytes(bad)).toThrow(expect.objectContaining({ code: "InvalidQuantity" }));
  });

  it("rounds vCPUs up, at least 1", () => {
    expect(vcpusFor(0.5)).toBe(1);
    expect(vcpusFor(2)).toBe(2);
    expect(vcpusFor(2.1)).toBe(3);
  });
});
