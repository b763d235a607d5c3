import { RegistryClient } from "./client.js";
import { storeCredentials } from "./credentials.js";

export interface LoginOptions {
  username: string;
  password: string;
  home: string;
  /** The registry speaks plain HTTP. */
  insecure?: boolean;
  /** Check the credentials against the registry first (default true). */
  verify?: boolean;
}

/** `iii worker login`: verifies the credentials with an authenticated GET /v2/, then stores them (mode 0600). */
export async function loginRegistry(registry: string, options: LoginOptions): Promise<string> {
  if (options.verify ?? true) {
    const client = new RegistryClient(registry, {
      insecureRegistries: options.insecure ? [registry] : [],
      credentials: async () => ({ username: options.username, password: options.password, source: "iii worker login" }),
      attempts: 2,
    });
    await client.ping();
  }
  return storeCredentials(registry, options.username, options.password, options.home);
}
