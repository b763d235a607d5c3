import { describe, expect, it } from "vitest";
import type { EnsuredImage } from "./ensure.js";
import { formatImageSummary } from "./summary.js";

const image: EnsuredImage = {
  digest: `sha256:${"ab".repeat(32)}`,
  rootfs: "/r",
  config: { entrypoint: ["/bin/app"], cmd: ["serve"], env: {}, workingDir: "/app", user: { spec: "1000", uid: 1000, gid: 1000, additionalGids: [] }, exposedPorts: [], labels: {} },
  sizeBytes: 1024,
  reference: "ghcr.io/acme/app:1",
  cached: true,
  skipped: [],
};

describe("formatImageSummary", () => {
  it("prints the image's command, or the worker's own (given after --) with the image's beside it", () => {
    expect(formatImageSummary(image)).toContain('runs ["/bin/app","serve"] as 1000:1000 in /app');
    const line = formatImageSummary(image, ["sh", "-c", "echo hi"]).find((l) => l.startsWith("runs "));
    expect(line).toBe('runs ["sh","-c","echo hi"] (the command given after --; the image\'s: ["/bin/app","serve"]) as 1000:1000 in /app');
  });

  it("shows the resources the image's worker manifest asks for, disk among them", () => {
    const manifest = { name: "resize", resources: { memory: "1Gi", disk: "20Gi" }, raw: {} };
    expect(formatImageSummary({ ...image, manifest })).toContain("resources: memory 1Gi, disk 20Gi");
  });
});
