export interface FirmwareDescription {
  ok: boolean;
  detail: string;
}

/** Placeholder until firmware resolution lands (issue: first real microVM). */
export async function describeFirmware(_env: NodeJS.ProcessEnv = process.env): Promise<FirmwareDescription> {
  return { ok: false, detail: "firmware resolution not implemented yet (libkrunfw)" };
}
