import type { Command } from "commander";

/** `iii-worker login`: stores registry credentials under III_HOME/auth.json. */
export function registerLogin(program: Command): void {
  program
    .command("login")
    .description("store registry credentials (checked against the registry) under III_HOME/auth.json, mode 0600")
    .argument("<registry>", "registry host[:port]")
    .option("-u, --username <user>")
    .option("--password-stdin", "read the password from stdin")
    .option("--insecure", "the registry speaks plain HTTP")
    .option("--no-verify", "store without checking the credentials")
    .action(async (registry: string, opts: { username?: string; passwordStdin?: boolean; insecure?: boolean; verify: boolean }) =>
      (await import("./images-run.js")).loginCommand(registry, opts),
    );
}
