// /proc/self/mountinfo parsing (proc(5)): the only way to look at a FUSE mount
// from the process serving it without sending it a request (which would deadlock
// a synchronous caller on the serving thread).

export interface MountInfoEntry {
  mountId: number;
  mountPoint: string;
  fsType: string;
  source: string;
}

function unescapeOctal(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

export function parseMountInfo(text: string): MountInfoEntry[] {
  const out: MountInfoEntry[] = [];
  for (const line of text.split("\n")) {
    if (!line) continue;
    const sep = line.indexOf(" - ");
    if (sep < 0) continue;
    const left = line.slice(0, sep).split(" ");
    const right = line.slice(sep + 3).split(" ");
    const mountPoint = left[4];
    const fsType = right[0];
    if (mountPoint === undefined || fsType === undefined) continue;
    out.push({ mountId: Number(left[0]), mountPoint: unescapeOctal(mountPoint), fsType, source: unescapeOctal(right[1] ?? "") });
  }
  return out;
}

/** The topmost mount at `mountPoint`, if any. */
export function findMount(entries: MountInfoEntry[], mountPoint: string): MountInfoEntry | undefined {
  let found: MountInfoEntry | undefined;
  for (const e of entries) if (e.mountPoint === mountPoint) found = e;
  return found;
}
