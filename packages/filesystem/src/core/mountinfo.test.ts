import { describe, expect, it } from "vitest";
import { findMount, parseMountInfo } from "./mountinfo.js";

const SAMPLE = [
  "22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw",
  "43 22 0:39 / /tmp/with\\040space/m rw,nosuid,nodev,relatime shared:2 - fuse.iii iii-fs rw,user_id=0,group_id=0",
  "44 43 0:40 / /tmp/with\\040space/m rw,relatime - fuse.other other rw",
  "",
].join("\n");

describe("mountinfo", () => {
  it("parses mount points with octal escapes and optional fields", () => {
    const entries = parseMountInfo(SAMPLE);
    expect(entries).toHaveLength(3);
    expect(entries[1]).toEqual({ mountId: 43, mountPoint: "/tmp/with space/m", fsType: "fuse.iii", source: "iii-fs" });
  });

  it("finds the topmost mount at a path", () => {
    const entries = parseMountInfo(SAMPLE);
    expect(findMount(entries, "/tmp/with space/m")?.fsType).toBe("fuse.other");
    expect(findMount(entries, "/nope")).toBeUndefined();
  });
});
