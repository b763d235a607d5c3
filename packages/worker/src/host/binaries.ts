import { isExecutable, which } from "./which.js";

export function findQemu(env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (env.III_QEMU_BIN) return isExecutable(env.III_QEMU_BIN) ? env.III_QEMU_BIN : undefined;
  return which("qemu-system-x86_64", ["/usr/bin", "/usr/local/bin"], env);
}

const VIRTIOFSD_DIRS = ["/usr/lib/qemu", "/usr/libexec", "/usr/lib/virtiofsd"];

export function findVirtiofsd(env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (env.III_VIRTIOFSD_BIN) return isExecutable(env.III_VIRTIOFSD_BIN) ? env.III_VIRTIOFSD_BIN : undefined;
  return which("virtiofsd", VIRTIOFSD_DIRS, env);
}
