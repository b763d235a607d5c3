// Signal numbers and names (x86-64 Linux) and the meaning of a waitpid status: the workload's and an exec's
// status is its exit code, or 128 + the signal that killed it, as a shell reports it.

export const SIGNALS: Record<string, number> = {
  SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGILL: 4, SIGTRAP: 5, SIGABRT: 6, SIGBUS: 7, SIGFPE: 8, SIGKILL: 9, SIGUSR1: 10,
  SIGSEGV: 11, SIGUSR2: 12, SIGPIPE: 13, SIGALRM: 14, SIGTERM: 15, SIGSTKFLT: 16, SIGCHLD: 17, SIGCONT: 18, SIGSTOP: 19,
  SIGTSTP: 20, SIGTTIN: 21, SIGTTOU: 22, SIGURG: 23, SIGXCPU: 24, SIGXFSZ: 25, SIGVTALRM: 26, SIGPROF: 27, SIGWINCH: 28,
  SIGIO: 29, SIGPWR: 30, SIGSYS: 31,
};
const NAMES = new Map(Object.entries(SIGNALS).map(([k, v]) => [v, k]));
export const signalName = (n: number): string => NAMES.get(n) ?? `SIG${n}`;

/** waitpid status → {code, signal} (code 128+n when killed by signal n). */
export function decodeWaitStatus(status: number): { code: number; signal: string | null } {
  const sig = status & 0x7f;
  if (sig === 0) return { code: (status >> 8) & 0xff, signal: null };
  return { code: 128 + sig, signal: signalName(sig) };
}
