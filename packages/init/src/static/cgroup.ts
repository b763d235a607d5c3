// The static init's cgroups: the portable implementation on QuickJS's os module and iii:sys.
import * as os from "os";
import * as sys from "iii:sys";
import { setupCgroup as setupPortable, type CgroupLimits, type CgroupOptions, type CgroupPlatform, type WorkerCgroup } from "../portable/cgroup.js";
import { toHex } from "../portable/bytes.js";
import { check, mkdirp, readFileOrThrow, writeText } from "./sys.js";

export const staticCgroupPlatform: CgroupPlatform = {
  readFile: readFileOrThrow,
  writeFile: (path, text) => writeText(path, text),
  mkdir: (path, recursive) => {
    if (recursive) mkdirp(path);
    else check(`mkdir ${path}`, os.mkdir(path, 0o755));
  },
  rmdir: (path) => void check(`rmdir ${path}`, os.remove(path)),
  subdirNames: (dir) => {
    const [names, err] = os.readdir(dir);
    if (err !== 0) return [];
    return names.filter((n) => {
      if (n === "." || n === "..") return false;
      const [st, e] = os.lstat(`${dir}/${n}`);
      return e === 0 && (st.mode & os.S_IFMT) === os.S_IFDIR;
    });
  },
  mount: (source, target, fstype, flags, data) => void check(`mount ${target}`, sys.mount(source, target, fstype, flags, data)),
  umount2: (target, flags) => void check(`umount ${target}`, sys.umount2(target, flags)),
  pid: os.getpid(),
  sigkill: (pid) => void os.kill(pid, 9),
  randomHex: (bytes) => {
    const buf = new ArrayBuffer(bytes);
    const fd = sys.open("/dev/urandom", os.O_RDONLY);
    if (fd >= 0) {
      os.read(fd, buf, 0, bytes);
      os.close(fd);
    } else new Uint8Array(buf).forEach((_, i, a) => (a[i] = Math.floor(Math.random() * 256)));
    return toHex(new Uint8Array(buf));
  },
  now: () => os.now(),
  sleep: (ms) => new Promise((r) => os.setTimeout(r, ms)),
};

export function setupCgroup(limits: CgroupLimits, options: CgroupOptions): { cgroup: WorkerCgroup; warnings: string[] } {
  return setupPortable(staticCgroupPlatform, limits, options);
}
