/** What the guest may put in supervisor.log in one run, and in one line. */
export const GUEST_LOG_BUDGET_BYTES = 1024 * 1024;
export const GUEST_LOG_LINE_BYTES = 1024;

/**
 * A writer for lines the guest causes (init's LOG messages, control-channel errors): each cut to `lineBytes`, at
 * most `budgetBytes` in all, then one line saying the rest is dropped. A guest that took over init must not fill
 * the host's disk through the supervisor's log, which is not rotated.
 */
export function budgetedLog(write: (line: string) => void, budgetBytes = GUEST_LOG_BUDGET_BYTES, lineBytes = GUEST_LOG_LINE_BYTES): (line: string) => void {
  let left = budgetBytes;
  let dropped = false;
  return (line) => {
    if (left <= 0) {
      if (!dropped) write(`guest: further guest messages dropped (${budgetBytes} bytes logged this run)`);
      dropped = true;
      return;
    }
    const cut = Buffer.byteLength(line) > lineBytes ? `${Buffer.from(line).subarray(0, lineBytes).toString()}… (cut)` : line;
    left -= Buffer.byteLength(cut);
    write(cut);
  };
}
