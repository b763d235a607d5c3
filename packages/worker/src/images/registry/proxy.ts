import type { Dispatcher } from "undici";
import { IiiError } from "../../errors.js";

/**
 * Registry traffic (image pulls, the short-name index, the firmware download) goes through the proxy the
 * environment names, as curl and docker do: `https_proxy`/`HTTPS_PROXY` for https URLs, `http_proxy`/`HTTP_PROXY`
 * for http ones (and for https when no https proxy is set), except for hosts `no_proxy`/`NO_PROXY` lists
 * (comma-separated hosts, domains, `host:port`, `*`). The lowercase spelling wins when both are set. undici's
 * EnvHttpProxyAgent does the matching and tunnels through the proxy with CONNECT.
 */
export interface ProxySettings {
  httpProxy?: string;
  httpsProxy?: string;
  noProxy?: string;
}

export function proxySettings(env: NodeJS.ProcessEnv = process.env): ProxySettings {
  const pick = (name: string) => env[name.toLowerCase()] || env[name.toUpperCase()] || undefined;
  const settings: ProxySettings = {};
  const httpProxy = pick("http_proxy");
  const httpsProxy = pick("https_proxy");
  const noProxy = pick("no_proxy");
  if (httpProxy) settings.httpProxy = httpProxy;
  if (httpsProxy) settings.httpsProxy = httpsProxy;
  if (noProxy) settings.noProxy = noProxy;
  return settings;
}

const agents = new Map<string, Dispatcher>();

/**
 * The dispatcher for these settings (one per distinct setting, reused), or undefined when no proxy is set.
 * undici loads only then (it is large, and most commands never fetch).
 */
export async function proxyDispatcher(env: NodeJS.ProcessEnv = process.env): Promise<Dispatcher | undefined> {
  const settings = proxySettings(env);
  if (!settings.httpProxy && !settings.httpsProxy) return undefined;
  const key = JSON.stringify(settings);
  let agent = agents.get(key);
  if (!agent) {
    const { EnvHttpProxyAgent } = await import("undici");
    // EnvHttpProxyAgent reads process.env for what is not given; pass every field so `env` alone decides
    agent = new EnvHttpProxyAgent({ httpProxy: settings.httpProxy ?? "", httpsProxy: settings.httpsProxy ?? settings.httpProxy ?? "", noProxy: settings.noProxy ?? "" });
    agents.set(key, agent);
  }
  return agent;
}

/** `fetch`, through the environment's proxy when one is set. */
export async function registryFetch(url: string | URL, init: RequestInit = {}, env: NodeJS.ProcessEnv = process.env): Promise<Response> {
  const dispatcher = await proxyDispatcher(env);
  if (!dispatcher) return fetch(url, init);
  const { fetch: undiciFetch } = await import("undici");
  return (await undiciFetch(url, { ...(init as Parameters<typeof undiciFetch>[1]), dispatcher })) as unknown as Response;
}

/**
 * The proxy a request to `url` goes through, or undefined to connect directly: the same choice undici's
 * EnvHttpProxyAgent made for `registryFetch` (https URLs use the https proxy, else the http one; http URLs the http
 * proxy), and its NO_PROXY matching: entries split on commas and spaces, `*` for all, `host` exactly, `.domain` or
 * `*.domain` for a suffix, an optional `:port` that must match too.
 */
export function proxyFor(url: URL, env: NodeJS.ProcessEnv = process.env): URL | undefined {
  const settings = proxySettings(env);
  const proxy = url.protocol === "https:" ? (settings.httpsProxy ?? settings.httpProxy) : settings.httpProxy;
  if (!proxy) return undefined;
  const host = url.hostname.replace(/^\[|\]$/g, "").toLowerCase();
  const port = Number(url.port) || (url.protocol === "https:" ? 443 : 80);
  for (const raw of (settings.noProxy ?? "").split(/[,\s]/)) {
    const entry = raw.trim().toLowerCase();
    if (!entry) continue;
    if (entry === "*") return undefined;
    const withPort = /^(.+):(\d+)$/.exec(entry);
    const name = (withPort ? withPort[1]! : entry).replace(/^\[|\]$/g, "");
    if (withPort && Number(withPort[2]) !== port) continue;
    if (/^[.*]/.test(name) ? host.endsWith(name.replace(/^\*/, "")) : host === name) return undefined;
  }
  try {
    return new URL(proxy.includes("://") ? proxy : `http://${proxy}`);
  } catch {
    throw new IiiError("InvalidOption", `proxy ${JSON.stringify(proxy)} from the environment is not a URL`);
  }
}
