import { IiiError } from "../../errors.js";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { iiiHome, managedRoot, workersFilePath } from "../../paths.js";
import { readJson } from "../../state/vm-record.js";
import { parseImageReference } from "../../images/oci/reference.js";
import { loadWorkersFile } from "../../state/workers-file.js";
import { listImages, pruneImages } from "../../catalog/catalog.js";
import { loginRegistry } from "../../images/registry/login.js";
import { formatTable } from "../output.js";
import { terminalJson, terminalSafeLine } from "../../util/terminal-safe.js";

function formatSize(bytes: number): string {
  if (bytes >= 1024 ** 3) return `${(bytes / 1024 ** 3).toFixed(1)}GiB`;
  if (bytes >= 1024 ** 2) return `${(bytes / 1024 ** 2).toFixed(1)}MiB`;
  if (bytes >= 1024) return `${(bytes / 1024).toFixed(1)}KiB`;
  return `${bytes}B`;
}

/** Worker name → image, from ./iii.workers.yaml (the only state file this process knows about). */
async function workersInUse(): Promise<Record<string, string>> {
  const file = await loadWorkersFile(workersFilePath());
  return Object.fromEntries(Object.entries(file.workers).map(([name, spec]) => [name, spec.image]));
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8").replace(/\r?\n$/, "");
}

/** `images`: cached images, their size and the workers using them. */
export async function imagesCommand(opts: { json?: boolean }): Promise<void> {
  const images = await listImages({ inUse: await workersInUse() });
  if (opts.json) {
    console.log(terminalJson(images, 2));
    return;
  }
  console.log(
    formatTable(
      ["DIGEST", "REFERENCES", "SIZE", "WORKERS"],
      images.map((image) => [
        image.digest.slice(7, 19),
        image.references.join(", ") || "<none>",
        formatSize(image.sizeBytes),
        image.usedBy.join(", ") || "-",
      ]),
    ),
  );
}

/** `prune`: removes cached images no worker of ./iii.workers.yaml references. */
/**
 * The images of workers of every project that were started from this III_HOME: each start leaves
 * `managed/<project>/<name>/launch.json` (until `remove`), naming the spec's image and the rootfs the VM mounts.
 * The image cache is shared by all projects of the home; prune must not take the lower layer from under another
 * project's running VM (it did: the guest's /bin/ls went ENOENT), nor the image of its stopped workers.
 */
async function imagesOfStartedWorkers(): Promise<string[]> {
  const root = managedRoot();
  const images: string[] = [];
  for (const key of await readdir(root).catch(() => [] as string[])) {
    for (const name of await readdir(join(root, key)).catch(() => [] as string[])) {
      const launch = await readJson<{ spec?: { image?: unknown }; rootfs?: unknown }>(join(root, key, name, "launch.json"));
      if (typeof launch?.spec?.image === "string") images.push(launch.spec.image);
      const lower = typeof launch?.rootfs === "string" ? /\/images\/sha256\/([a-f0-9]{64})\/rootfs$/.exec(launch.rootfs) : null;
      if (lower) images.push(`sha256:${lower[1]}`);
    }
  }
  return images;
}

export async function pruneCommand(opts: { dryRun?: boolean }): Promise<void> {
  const inUse = await workersInUse();
  const result = await pruneImages([...Object.values(inUse), ...(await imagesOfStartedWorkers())], { dryRun: opts.dryRun ?? false });
  for (const image of result.removed) {
    console.error(`${opts.dryRun ? "would remove" : "removed"} ${image.digest.slice(7, 19)} ${terminalSafeLine(image.references.join(", "))} (${formatSize(image.sizeBytes)})`);
  }
  console.error(
    `${opts.dryRun ? "would free" : "freed"} ${formatSize(result.freedBytes)} (${result.removed.length} image(s), ${result.removedBlobs} blob(s))`,
  );
}

/** `login`: stores registry credentials, checked against the registry unless --no-verify. */
const DOCKER_HUB_NAMES = new Set(["docker.io", "index.docker.io", "registry-1.docker.io"]);

export async function loginCommand(
  registry: string,
  opts: { username?: string; passwordStdin?: boolean; insecure?: boolean; verify: boolean },
): Promise<void> {
  const notAHost = `login ${JSON.stringify(registry)}: not a registry host; name the registry as host.domain, host:port or localhost`;
  let host: string;
  try {
    // the host part of a reference naming one repository there (its error would name that made-up reference)
    host = parseImageReference(`${registry}/probe`).registry;
  } catch (error) {
    throw new IiiError("InvalidReference", notAHost, { cause: error });
  }
  // A name without a dot or a port (not localhost) is a Docker Hub namespace in a reference: `login myregistry`
  // stored the password for Docker Hub and verified it there, sending it to a registry the user never named.
  if (host !== registry && !(host === "docker.io" && DOCKER_HUB_NAMES.has(registry))) {
    throw new IiiError(
      "InvalidReference",
      `login ${JSON.stringify(registry)}: not a registry host (in an image reference it is a Docker Hub namespace); name the registry as host.domain, host:port or localhost`,
    );
  }
  if (!opts.username) throw new IiiError("UsageError", "login needs --username");
  if (!opts.passwordStdin) throw new IiiError("UsageError", "login needs --password-stdin (passwords are never taken as arguments)");
  const password = await readStdin();
  if (!password) throw new IiiError("UsageError", "login: empty password on stdin");
  const path = await loginRegistry(host, {
    username: opts.username,
    password,
    home: iiiHome(),
    insecure: opts.insecure ?? false,
    verify: opts.verify,
  });
  console.error(`login succeeded; credentials for ${host} stored in ${path}`);
}
