import type { EnsuredImage } from "./ensure.js";

function formatBytes(bytes: number): string {
  if (bytes >= 1024 ** 3) return `${(bytes / 1024 ** 3).toFixed(1)} GiB`;
  if (bytes >= 1024 ** 2) return `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
  if (bytes >= 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${bytes} B`;
}

/**
 * What `add` prints about a pulled image: its worker manifest (/iii/worker.yaml) if any, size, digest and how it
 * runs. One line per fact, for stderr.
 */
/** `command`: the worker's own command (given after `--`), which replaces the image's Entrypoint+Cmd. */
export function formatImageSummary(image: EnsuredImage, command?: string[]): string[] {
  const lines: string[] = [];
  const m = image.manifest;
  if (m) {
    lines.push(`${m.name ?? "(unnamed)"}${m.version ? ` ${m.version}` : ""}${m.description ? ` - ${m.description}` : ""}`);
    if (m.resources?.cpus || m.resources?.memory || m.resources?.disk) {
      const { cpus, memory, disk } = m.resources;
      lines.push(`resources: ${[cpus && `cpus ${cpus}`, memory && `memory ${memory}`, disk && `disk ${disk}`].filter(Boolean).join(", ")}`);
    }
  }
  lines.push(`image ${image.reference} ${image.digest.slice(0, 19)} ${formatBytes(image.sizeBytes)}${image.cached ? " (cached)" : ""}`);
  const c = image.config;
  const argv = [...c.entrypoint, ...c.cmd];
  const runs = command?.length
    ? `${JSON.stringify(command)} (the command given after --; the image's: ${argv.length ? JSON.stringify(argv) : "none"})`
    : argv.length
      ? JSON.stringify(argv)
      : "(no command)";
  lines.push(`runs ${runs} as ${c.user.name ?? c.user.uid}:${c.user.gid} in ${c.workingDir}`);
  if (c.exposedPorts.length) lines.push(`exposes ${c.exposedPorts.map((p) => `${p.port}/${p.protocol}`).join(", ")}`);
  if (image.skipped.length) lines.push(`${image.skipped.length} device node(s) in the layers were not created`);
  return lines;
}
