import { IiiError } from "../../errors.js";
import { TarLimitError } from "./tar-reader.js";

/** A read or decode failure as the layer's typed error (policy refusals are already typed). */
export function wrapReadError(error: unknown, label: string): unknown {
  if (error instanceof IiiError) return error;
  if (error instanceof TarLimitError) return new IiiError("LayerRejected", `${label}: rejected: ${error.message}`, { cause: error });
  return new IiiError("ImageInvalid", `${label}: cannot read the layer: ${(error as Error).message}`, { cause: error });
}
