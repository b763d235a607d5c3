import { lstat, mkdir, mkdtemp, rm, stat, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureImage } from "../src/images/index.js";
import { writeLayout } from "./images/fixtures/oci-writer.js";

// Review rev6h: unpacking sets each directory's time last (creating children updates it), by path, with utimes(2),
// which follows links. A later entry of the same layer can replace that directory, or one above it, with a symlink
// to a host path, and the deferred utimes then set the times of the host file it names (as root, to the mtime the
// image chooses: 1970 makes a file look stale to age-based cleaners and backups). Real image pulls (`oci:` layouts,
// as `iii-worker add oci:DIR` reads them); the victims are files of this test's own directory.

const EPOCH = new Date(1_700_000_000_000); // the mtime the test fixtures' tar writer gives every entry
const VICTIM_TIME = new Date("2020-02-02T02:02:02Z");

describe("directory times are never set through a symlink a later entry put in their place", () => {
  let work: string;
  let victims: string;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), "iii-rev6h-times-"));
    victims = join(work, "host");
    await mkdir(join(victims, "etc"), { recursive: true });
    for (const f of ["file", "etc/passwd"]) {
      await writeFile(join(victims, f), "host data");
      await utimes(join(victims, f), VICTIM_TIME, VICTIM_TIME);
    }
  });
  afterAll(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });

  const mtimeOf = async (path: string) => (await stat(path)).mtime.toISOString();

  async function pull(name: string, entries: Parameters<typeof writeLayout>[2]["layers"][number]["entries"]) {
    const layout = join(work, name);
    await writeLayout(layout, "1", { config: { Cmd: ["/bin/app"] }, layers: [{ compression: "gzip", entries }] });
    return ensureImage(`oci:${layout}:1`, { home: join(work, `home-${name}`) });
  }

  it("a directory replaced by a symlink to a host file: the host file keeps its times", async () => {
    const ensured = await pull("last", [
      { name: "d", type: "directory" },
      { name: "d", type: "symlink", linkname: join(victims, "file") },
    ]);
    expect(await mtimeOf(join(victims, "file"))).toBe(VICTIM_TIME.toISOString());
    expect(await mtimeOf(join(victims, "file"))).not.toBe(EPOCH.toISOString());
    expect((await lstat(join(ensured.rootfs, "d"))).isSymbolicLink()).toBe(true);
  });

  it("a directory above it replaced by a symlink to a host directory: the host file below keeps its times", async () => {
    await pull("parent", [
      { name: "a", type: "directory" },
      { name: "a/passwd", type: "directory" },
      { name: "a", type: "symlink", linkname: join(victims, "etc") },
    ]);
    expect(await mtimeOf(join(victims, "etc", "passwd"))).toBe(VICTIM_TIME.toISOString());
  });

  it("directories that stay directories still get the image's times", async () => {
    const ensured = await pull("plain", [
      { name: "x", type: "directory" },
      { name: "x/y", type: "directory" },
      { name: "x/y/f", content: "f" },
    ]);
    expect(await mtimeOf(join(ensured.rootfs, "x"))).toBe(EPOCH.toISOString());
    expect(await mtimeOf(join(ensured.rootfs, "x", "y"))).toBe(EPOCH.toISOString());
  });
});
