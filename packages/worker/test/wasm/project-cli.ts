import { runWorkerCli } from "../helpers.js";

export interface WorkerRow {
  name: string;
  status: string;
  lastExit: { reason: string } | null;
}

/** The CLI run in `project` with its own III_HOME, and one worker's row of `list --json`. */
export function projectCli(project: string, home: string) {
  const cli = (args: string[]) => runWorkerCli(args, { cwd: project, env: { III_HOME: home } });
  const status = async (name: string): Promise<WorkerRow> => {
    const rows = JSON.parse((await cli(["list", "--json"])).stdout) as WorkerRow[];
    const row = rows.find((r) => r.name === name);
    if (!row) throw new Error(`no worker ${name} in list --json: ${rows.map((r) => r.name).join(", ") || "(none)"}`);
    return row;
  };
  return { cli, status };
}
