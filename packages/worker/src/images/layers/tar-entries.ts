import { IiiError } from "../../errors.js";

/** A read or decode failure as the layer's typed error (policy refusals are already typed). */
export function wrapReadError(error: unknown, label: string): unknown {
  if (error instanceof IiiError) return error;
  return new IiiError("ImageInvalid", `${label}: cannot read the layer: ${(error as Error).message}`, { cause: error });
}
