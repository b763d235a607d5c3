import { terminalSafeLine } from "../util/terminal-safe.js";

/**
 * Fixed-width table for terminal output; the last column is not padded. Every cell is made one terminal-safe line
 * first (a STATUS can be a guest's text: util/terminal-safe.ts), so the widths are those of what is printed.
 */
export function formatTable(header: string[], table: string[][]): string {
  const rows = table.map((row) => row.map(terminalSafeLine));
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells
      .map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd();
  return [line(header), ...rows.map(line)].join("\n");
}
