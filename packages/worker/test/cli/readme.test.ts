import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { beforeAll, describe, expect, it } from "vitest";
import { runWorkerCli } from "../helpers.js";

/**
 * The root README's command table against the real `--help` of every command, both ways: each command (and
 * alias) and each flag the CLI shows is in the table, and the table names nothing the CLI does not have. Whoever
 * adds a command or a flag adds it to the table.
 */
const README = fileURLToPath(new URL("../../../../README.md", import.meta.url));
const cwd = fileURLToPath(new URL(".", import.meta.url));

interface HelpCommand {
  name: string;
  aliases: string[];
}

/** `Commands:` of the root help: `  name|alias [options] <args>  description` (continuations are indented deeper). */
function parseCommands(help: string): HelpCommand[] {
  const section = help.split(/^Commands:\n/m)[1] ?? "";
  return [...section.matchAll(/^ {2}([a-z][\w-]*)((?:\|[a-z][\w-]*)*)(?= |$)/gm)].map((m) => ({
    name: m[1]!,
    aliases: m[2] ? m[2].slice(1).split("|") : [],
  }));
}

/** `Options:` of a help text: every short and long flag. */
function parseFlags(help: string): string[] {
  const section = (help.split(/^Options:\n/m)[1] ?? "").split(/^\S/m)[0]!;
  return [...section.matchAll(/^ {2}(?:(-[a-zA-Z]), )?(--[\w-]+)/gm)].flatMap((m) => (m[1] ? [m[1], m[2]!] : [m[2]!]));
}

interface ReadmeRow {
  name: string;
  /** Every backticked word of the first cell beyond the first (aliases). */
  aliases: string[];
  flags: string[];
}

function readmeRows(): ReadmeRow[] {
  const text = readFileSync(README, "utf8");
  const section = text.split("## `iii worker` commands")[1]!.split(/^## /m)[0]!;
  const table = section.split(/^\| command \| flags \| what it does \|\n\|---\|---\|---\|\n/m)[1]!.split(/\n(?!\|)/)[0]!;
  return table.split("\n").map((line) => {
    const cells = line.replace(/\\\|/g, "\u0000").split("|").slice(1, -1).map((c) => c.replace(/\u0000/g, "|").trim());
    const [command, flags] = cells as [string, string];
    const words = [...command.matchAll(/`([^`]+)`/g)].map((m) => m[1]!.split(/\s+/)[0]!);
    return {
      name: words[0]!,
      aliases: words.slice(1),
      flags: [...flags.matchAll(/`([^`]+)`/g)].flatMap((m) => [...m[1]!.matchAll(/(?<![\w-])(--?[a-zA-Z][\w-]*)/g)].map((f) => f[1]!)),
    };
  });
}

describe("the README's command table matches --help", () => {
  let commands: HelpCommand[];
  let rootFlags: string[];
  const flagsOf = new Map<string, string[]>();

  beforeAll(async () => {
    const root = await runWorkerCli(["--help"], { cwd });
    expect(root.code).toBe(0);
    commands = parseCommands(root.stdout);
    rootFlags = parseFlags(root.stdout);
    await Promise.all(
      commands.map(async (c) => {
        const help = await runWorkerCli(c.name === "help" ? ["help", "--help"] : [c.name, "--help"], { cwd });
        // commander's own `help` command has no help of its own; it has no flags
        flagsOf.set(c.name, c.name === "help" ? [] : parseFlags(help.stdout).filter((f) => f !== "-h" && f !== "--help"));
      }),
    );
  }, 120_000);

  it("parses what it compares (the parsers are not vacuous)", () => {
    expect(commands.map((c) => c.name)).toEqual(expect.arrayContaining(["add", "list", "logs", "exec", "inspect", "completion", "help"]));
    expect(commands.find((c) => c.name === "list")?.aliases).toEqual(["ls"]);
    expect(flagsOf.get("logs")).toEqual(expect.arrayContaining(["-f", "--follow", "--since", "-t", "--timestamps"]));
    expect(flagsOf.get("add")).toContain("--wasm-udp-outgoing");
    expect(rootFlags).toEqual(expect.arrayContaining(["--debug", "-h", "--help"]));
    expect(readmeRows().length).toBeGreaterThan(10);
  });

  it("every command and alias of --help has its row, and every row is a command", () => {
    const rows = readmeRows();
    const documented = rows.map((r) => r.name).filter((n) => n !== "iii-worker");
    expect(documented.sort()).toEqual(commands.map((c) => c.name).sort());
    for (const c of commands) expect(rows.find((r) => r.name === c.name)?.aliases.sort(), `aliases of ${c.name}`).toEqual(c.aliases.sort());
  });

  it("every flag of every command is in its row, and every flag in a row exists", () => {
    const rows = readmeRows();
    for (const c of commands) {
      const row = rows.find((r) => r.name === c.name)!;
      expect(new Set(row.flags), `README flags of ${c.name}`).toEqual(new Set(flagsOf.get(c.name)));
    }
    const global = rows.find((r) => r.name === "iii-worker")!;
    expect(new Set(global.flags), "README global flags").toEqual(new Set(rootFlags));
  });
});
