import type { Command } from "commander";
import { IiiError } from "../errors.js";

function notYet(command: string, issue: string): never {
  throw new IiiError("NotImplemented", `"${command}" is not implemented yet (${issue})`);
}

/** `images`, `prune`, `login`: the image cache and registry credentials. */
export function registerImageCommands(program: Command): void {
  program
    .command("images")
    .description("list cached images, their size and the workers using them")
    .action(() => notYet("images", "OCI images"));

  program
    .command("prune")
    .description("remove cached images no worker references")
    .action(() => notYet("prune", "OCI images"));

  program
    .command("login")
    .description("store registry credentials")
    .argument("<registry>")
    .option("-u, --username <user>")
    .option("--password-stdin")
    .action(() => notYet("login", "OCI images"));

}
