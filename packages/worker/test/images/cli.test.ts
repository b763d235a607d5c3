import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Command } from "commander";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { registerImageCommands } from "../../src/cli/program.js";
import { ensureImage } from "../../src/images/index.js";
import { writeLayout } from "./fixtures/oci-writer.js";

/** `images` and `prune` through commander, against a real cache and a real ./iii.workers.yaml. */
describe("iii worker images / prune", () => {
  let work: string;
  const saved = { home: process.env.III_HOME, cwd: process.cwd() };

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), "iii-img-cli-"));
    process.env.III_HOME = join(work, "home");
    process.chdir(work);
  });

  afterAll(async () => {
    process.chdir(saved.cwd);
    if (saved.home === undefined) delete process.env.III_HOME;
    else process.env.III_HOME = saved.home;
    await rm(work, { recursive: true, force: true });
  });

  async function run(...args: string[]): Promise<{ out: string; err: string }> {
    const out: string[] = [];
    const err: string[] = [];
    const log = vi.spyOn(console, "log").mockImplementation((...a) => void out.push(a.join(" ")));
    const error = vi.spyOn(console, "error").mockImplementation((...a) => void err.push(a.join(" ")));
    try {
      const program = new Command().exitOverride();
      registerImageCommands(program);
      await program.parseAsync(["node", "iii-worker", ...args]);
    } finally {
      log.mockRestore();
      error.mockRestore();
    }
    return { out: out.join("\n"), err: err.join("\n") };
  }

  it("lists images with the workers using them, and prunes only unreferenced ones", async () => {
    const used = join(work, "used");
    const unused = join(work, "unused");
    await writeLayout(used, "1", { layers: [{ entries: [{ name: "u", content: "used" }] }] });
    await writeLayout(unused, "1", { layers: [{ entries: [{ name: "x", content: "unused" }] }] });
    const a = await ensureImage(`oci:${used}:1`);
    const b = await ensureImage(`oci:${unused}:1`);
    await writeFile(join(work, "iii.workers.yaml"), `workers:\n  web:\n    image: "oci:${used}:1"\n`);

    const listed = await run("images");
    expect(listed.out).toMatch(/^DIGEST\s+REFERENCES\s+SIZE\s+WORKERS$/m);
    expect(listed.out).toMatch(new RegExp(`^${a.digest.slice(7, 19)}\\s+oci:${used}:1\\s+\\S+\\s+web$`, "m"));
    expect(listed.out).toMatch(new RegExp(`^${b.digest.slice(7, 19)}\\s+oci:${unused}:1\\s+\\S+\\s+-$`, "m"));
    const json = JSON.parse((await run("images", "--json")).out) as Array<{ digest: string; usedBy: string[] }>;
    expect(json.find((i) => i.digest === a.digest)?.usedBy).toEqual(["web"]);

    const dry = await run("prune", "--dry-run");
    expect(dry.err).toMatch(`would remove ${b.digest.slice(7, 19)}`);
    expect((await readdir(join(work, "home", "images", "sha256"))).length).toBe(2);
    const pruned = await run("prune");
    expect(pruned.err).toMatch(`removed ${b.digest.slice(7, 19)} oci:${unused}:1`);
    expect(await readdir(join(work, "home", "images", "sha256"))).toEqual([a.digest.slice(7)]);
  });
});
