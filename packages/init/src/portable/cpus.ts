// Which CPUs init brings online. Under TCG the worker boots a guest with more than one vCPU on `maxcpus=1`
// (packages/worker/src/vmm/qemu-argv.ts, smpBootWords): the kernel patches its own code while it boots (static
// keys: sched_clock's "stable" key at late init, CFS bandwidth when a quota is set), and QEMU's parallel TCG can
// run a stale translation of a patched instruction on another vCPU, which kills the kernel ("Oops: int3"). With
// one CPU online that cannot happen; init sets up the limits first and then brings the others online, before the
// workload starts.

/** A sysfs CPU list ("0-3,6,8-9", "" or "\n" for none) → CPU numbers, ascending; null if it is not one. */
export function parseCpuList(text: string): number[] | null {
  const trimmed = text.trim();
  if (trimmed === "") return [];
  const cpus = new Set<number>();
  for (const part of trimmed.split(",")) {
    const m = /^(\d{1,4})(?:-(\d{1,4}))?$/.exec(part);
    if (!m) return null;
    const first = Number(m[1]);
    const last = m[2] === undefined ? first : Number(m[2]);
    if (last < first) return null;
    for (let cpu = first; cpu <= last; cpu++) cpus.add(cpu);
  }
  return [...cpus].sort((a, b) => a - b);
}

/** The present CPUs that are not online: what init writes 1 to `cpuN/online` for. */
export function offlineCpus(present: string, online: string): number[] | null {
  const p = parseCpuList(present);
  const o = parseCpuList(online);
  if (p === null || o === null) return null;
  const up = new Set(o);
  return p.filter((cpu) => !up.has(cpu));
}
