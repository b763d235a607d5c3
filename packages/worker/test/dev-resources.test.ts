import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { totalmem, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { resourceRaises, runDev } from "../src/cli/commands/dev-run.js";
import { workerPaths } from "../src/paths.js";

// iii.worker.yaml is in the project the dev guest writes; its `resources` are honoured at the next `iii worker dev`.
// A guest that appends `resources: {memory: 16Gi, cpus: 8}` raised its own limits for the next session (memory has
// no upper bound in the parser). These run `iii worker dev` up to the image step (a base image that does not exist
// stops it right after the checks) with the manifest as the guest would leave it.

let root: string;
let proj: string;
let home: string;

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), "iii-dev-resources-"));
  proj = join(root, "proj");
  home = join(root, "home");
  mkdirSync(proj);
  writeFileSync(join(proj, "package.json"), JSON.stringify({ name: "proj", scripts: { start: "node index.js" } }));
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

function manifest(resources: string): void {
  writeFileSync(join(proj, "iii.worker.yaml"), `name: proj\nresources:\n${resources}`);
}

/** `iii worker dev` until it stops: the error's code and message (RootfsNotFound = it got past the checks to the image). */
async function dev(acceptResources = false): Promise<{ code: string; message: string }> {
  const env = { III_HOME: home, III_DEV_IMAGE_NODE: `oci:${join(root, "no-such-layout")}:latest` };
  return runDev(proj, { engineUrl: "ws://127.0.0.1:9", env, acceptResources }).then(
    () => expect.unreachable("the bogus base image should have stopped the run"),
    (error: { code: string; message: string }) => ({ code: error.code, message: error.message }),
  );
}

const record = () => JSON.parse(readFileSync(join(dirname(workerPaths("iii-dev-proj", { III_HOME: home }, proj).dir), ".dev-resources.json"), "utf8"));

describe("iii worker dev and the resources the guest can write", () => {
  it("a raise since the last run is refused in one line until --accept-resources; lowering is not", async () => {
    manifest("  memory: 1Gi\n  cpus: 1\n");
    expect((await dev()).code).toBe("RootfsNotFound");

    // What the guest leaves for the next session.
    manifest("  memory: 8Gi\n  cpus: 2\n  disk: 1Ti\n");
    const refused = await dev();
    expect(refused.code).toBe("InvalidOption");
    expect(refused.message).toMatch(/iii\.worker\.yaml asks for more than the last dev run of this project \(cpus 1 -> 2, memory 1Gi -> 8Gi, disk default -> 1024Gi\).*--accept-resources/);
    expect(record()).toEqual({ memoryBytes: 2 ** 30, cpus: 1 });
    // The sandbox's default name comes from the manifest too: a new name is the same project.
    writeFileSync(join(proj, "iii.worker.yaml"), "name: fresh-name\nresources:\n  memory: 8Gi\n");
    expect((await dev()).code).toBe("InvalidOption");
    manifest("  memory: 8Gi\n  cpus: 2\n  disk: 1Ti\n");

    expect((await dev(true)).code).toBe("RootfsNotFound");
    expect(record()).toEqual({ memoryBytes: 8 * 2 ** 30, cpus: 2, diskBytes: 2 ** 40 });

    manifest("  memory: 512Mi\n");
    expect((await dev()).code).toBe("RootfsNotFound");
  });

  it("memory above the host's is refused, accepted or not", async () => {
    manifest(`  memory: "${Math.ceil(totalmem() / 2 ** 30) + 1}Gi"\n`);
    const refused = await dev(true);
    expect(refused.code).toBe("InvalidQuantity");
    expect(refused.message).toMatch(/resources\.memory \d+Gi is more than this host has/);
  });

  it("resourceRaises names each raise", () => {
    expect(resourceRaises({ cpus: 2, memoryBytes: 2 ** 29 }, { cpus: 1, memoryBytes: 2 ** 29 })).toEqual([]);
    expect(resourceRaises({}, { cpus: 0.5 })).toEqual(["cpus default -> 0.5"]);
    expect(resourceRaises({ diskBytes: 2 ** 30 }, { diskBytes: 3 * 2 ** 30 + 1 })).toEqual([`disk 1Gi -> ${3 * 2 ** 30 + 1}`]);
  });
});
