import { describe, expect, it } from "vitest";
import { downloadOnce } from "./download-once.js";
import { Semaphore } from "./semaphore.js";

describe("util", () => {
  it("Semaphore runs at most `limit` tasks at once, the rest in order", async () => {
    const slots = new Semaphore(2);
    let active = 0;
    let peak = 0;
    const order: number[] = [];
    await Promise.all(
      [0, 1, 2, 3, 4].map((i) =>
        slots.run(async () => {
          active += 1;
          peak = Math.max(peak, active);
          await new Promise((r) => setTimeout(r, 5));
          order.push(i);
          active -= 1;
        }),
      ),
    );
    expect(peak).toBe(2);
    expect(order.sort()).toEqual([0, 1, 2, 3, 4]);
  });

  it("downloadOnce shares one in-flight download per path, and starts anew once it settled", async () => {
    let calls = 0;
    const download = () => new Promise<void>((r) => setTimeout(() => (calls += 1, r()), 5));
    await Promise.all([downloadOnce("/a", download), downloadOnce("/a", download), downloadOnce("/b", download)]);
    expect(calls).toBe(2);
    await downloadOnce("/a", download);
    expect(calls).toBe(3);
  });
});
