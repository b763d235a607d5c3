// Text the CLI prints for a human that an image or a guest can choose (error messages and console tails, a last
// exit's reason, health reasons, image config and manifest fields, names from a project a dev guest writes) must not
// drive the user's terminal: an ESC sequence can put a command on the clipboard (OSC 52), retitle the window, or
// erase a line and print a fake one in its place. The functions here turn every control character into visible
// text at the point of printing; stored state keeps the bytes as they came.
//
// The visible form: a C0 control (U+0000-U+001F), DEL (U+007F) or a C1 control (U+0080-U+009F) becomes `\xNN`,
// NN its code point in lower-case hex. ESC [2K becomes the text `\x1b[2K`, BEL `\x07`, CSI (U+009B) `\x9b`. It is
// for reading, not a reversible encoding (a literal `\x1b` in the text looks the same).
//
// Not filtered: the workload's own byte streams (`logs`, `exec` stdout/stderr, `dev`'s output), which pass
// through byte for byte as `docker logs` and `kubectl exec` pass them.

/** Every C0 control but TAB and LF, DEL and every C1 control. */
const CONTROLS = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g;
/** Every C0 control, DEL and every C1 control. */
const CONTROLS_AND_LINE_BREAKS = /[\u0000-\u001f\u007f-\u009f]/g;
/** What JSON.stringify leaves raw that a terminal may still act on: DEL and C1 (it escapes C0 itself). */
const JSON_RAW_CONTROLS = /[\u007f-\u009f]/g;

const visible = (c: string) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`;

/** Multi-line text for the terminal: keeps `\n` and `\t`, shows every other control character as `\xNN` (CR too). */
export function terminalSafe(text: string): string {
  return text.replace(CONTROLS, visible);
}

/**
 * One line for the terminal (an error line, a table cell, a name): every control character, `\n` and `\t`
 * included, as `\xNN`, so the text can neither break the line nor the table it sits in.
 */
export function terminalSafeLine(text: string): string {
  return text.replace(CONTROLS_AND_LINE_BREAKS, visible);
}

/**
 * JSON.stringify for the terminal: the same JSON value, with DEL and C1 controls (which JSON.stringify leaves raw)
 * written as `\u00NN` escapes. Outside strings JSON output is ASCII, so only string contents change form.
 */
export function terminalJson(value: unknown, indent?: number): string {
  return (JSON.stringify(value, null, indent) ?? "null").replace(JSON_RAW_CONTROLS, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}
