/** What the guest may put in supervisor.log in one run (per source; III_GUEST_LOG_BUDGET_BYTES), and in one line. */
export const GUEST_LOG_BUDGET_BYTES = 1024 * 1024;
export const GUEST_LOG_LINE_BYTES = 1024;

/** The budget from III_GUEST_LOG_BUDGET_BYTES (a positive integer), else the default. */
export function guestLogBudget(env: NodeJS.ProcessEnv): number {
  const n = Number(env.III_GUEST_LOG_BUDGET_BYTES);
  return Number.isSafeInteger(n) && n > 0 ? n : GUEST_LOG_BUDGET_BYTES;
}

/**
 * A writer for lines the guest causes (init's LOG messages, control-channel errors, the network stack's denials
 * and refused names): each cut to `lineBytes`, at most `budgetBytes` in all, then one line saying the rest is
 * dropped. A guest must not fill the host's disk through the supervisor's log, which is not rotated: a loop of
 * connections to a denied address logged a line each.
 */
export function budgetedLog(
  write: (line: string) => void,
  { budgetBytes = GUEST_LOG_BUDGET_BYTES, lineBytes = GUEST_LOG_LINE_BYTES, what = "guest" }: { budgetBytes?: number; lineBytes?: number; what?: string } = {},
): (line: string) => void {
  let left = budgetBytes;
  let dropped = false;
  return (line) => {
    if (left <= 0) {
      if (!dropped) write(`${what}: further messages dropped (${budgetBytes} bytes of them logged this run)`);
      dropped = true;
      return;
    }
    const cut = Buffer.byteLength(line) > lineBytes ? `${Buffer.from(line).subarray(0, lineBytes).toString()}… (cut)` : line;
    left -= Buffer.byteLength(cut);
    write(cut);
  };
}
