// End of input on a terminal. A pty has no half-close: its reader sees
// end-of-file when it reads the VEOF character in canonical mode (the line
// discipline turns it into a zero-length read), and a raw-mode reader (a
// shell's line editor) takes the VEOF byte itself as EOF, as when a user types
// Ctrl-D. VEOF typed while input is still queued stays in the queue as a marker
// that comes out as a NUL byte if the reader leaves canonical mode before
// reading it (n_tty stores it as __DISABLED_CHAR): so VEOF is typed only once
// the reader has drained the queue, and twice after a partial line (the first
// only ends that line). Both inits poll with these, on a slave fd they hold.

/** ioctl requests (x86-64 Linux). */
export const TCGETS = 0x5401;
export const FIONREAD = 0x541b;
/** struct termios (kernel): c_lflag at byte 12, c_cc at 17, VEOF index 4. */
export const TERMIOS_BYTES = 64;
const LFLAG_OFFSET = 12;
const CC_OFFSET = 17;
const VEOF = 4;
const ICANON = 0o2;
const CTRL_D = 4;
/** Between looks at the queue; the line discipline takes a moment to see what was written to the master. */
export const TTY_EOF_POLL_MS = 20;

export interface TtyEof {
  /** VEOFs still to type: 2 after a partial line, else 1; 0 once done. */
  left: number;
  /** Consecutive looks that found the queue empty (typing needs 2: writes reach the queue asynchronously). */
  emptyLooks: number;
}

/** Starts an end of input after the last byte the reader was sent (undefined: nothing was sent). */
export function ttyEofStart(lastByte: number | undefined): TtyEof {
  return { left: lastByte === undefined || lastByte === 0x0a || lastByte === 0x0d ? 1 : 2, emptyLooks: 0 };
}

/**
 * One look at the slave: `termios` from TCGETS, `queued` from FIONREAD. Returns the byte to type into the
 * master now, or null to look again after TTY_EOF_POLL_MS (while `state.left` > 0).
 */
export function ttyEofStep(state: TtyEof, termios: Uint8Array, queued: number): number | null {
  if (state.left <= 0) return null;
  if (queued > 0) {
    state.emptyLooks = 0;
    return null;
  }
  state.emptyLooks += 1;
  if (state.emptyLooks < 2) return null;
  state.emptyLooks = 0;
  const view = new DataView(termios.buffer, termios.byteOffset, termios.byteLength);
  const canonical = (view.getUint32(LFLAG_OFFSET, true) & ICANON) !== 0;
  // A raw reader has no partial line to end: one Ctrl-D is the whole end of input.
  state.left = canonical ? state.left - 1 : 0;
  const veof = termios[CC_OFFSET + VEOF] ?? 0;
  return veof === 0 ? CTRL_D : veof;
}
