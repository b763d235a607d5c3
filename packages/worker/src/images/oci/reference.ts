import { IiiError } from "../../errors.js";

/** A parsed OCI image reference (`[registry/]repository[:tag][@digest]`). */
export interface ImageReference {
  registry: string;
  repository: string;
  tag?: string;
  digest?: string;
}

/** Local image sources: an unpacked rootfs, an OCI layout dir or tar, a `docker save` tar. */
export const LOCAL_SOURCE_PREFIXES = ["dir:", "oci:", "oci-archive:", "docker-archive:"] as const;

const DOMAIN = /^(?:localhost|[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:]+\])(?::\d{1,5})?$/;
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^sha256:[a-f0-9]{64}$/;

export const DEFAULT_REGISTRY = "docker.io";

function invalid(text: string, why: string): never {
  throw new IiiError("InvalidReference", `invalid image reference "${text}": ${why}`);
}

/** Parses and validates an image reference following the distribution reference grammar. */
export function parseImageReference(text: string): ImageReference {
  if (text.length === 0 || text.length > 512) invalid(text, "must be 1-512 characters");
  let rest = text;
  let digest: string | undefined;
  const at = rest.indexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) invalid(text, `digest "${digest}" is not sha256:<64 hex>`);
  }
  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf("/");
  const colon = rest.lastIndexOf(":");
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) invalid(text, `tag "${tag}" is not valid`);
  }
  const parts = rest.split("/");
  let registry = DEFAULT_REGISTRY;
  const head = parts[0]!;
  if (parts.length > 1 && (head.includes(".") || head.includes(":") || head === "localhost" || head.startsWith("["))) {
    registry = head;
    parts.shift();
    if (!DOMAIN.test(registry)) invalid(text, `registry "${registry}" is not a host[:port]`);
  }
  if (parts.length === 0 || parts.some((p) => !PATH_COMPONENT.test(p))) {
    invalid(text, "the repository must be lowercase path components (a-z, 0-9, '.', '_', '-') separated by '/'");
  }
  if (registry === DEFAULT_REGISTRY && parts.length === 1) parts.unshift("library");
  const ref: ImageReference = { registry, repository: parts.join("/") };
  if (tag !== undefined) ref.tag = tag;
  if (digest !== undefined) ref.digest = digest;
  return ref;
}

export function formatImageReference(ref: ImageReference): string {
  return `${ref.registry}/${ref.repository}${ref.tag ? `:${ref.tag}` : ""}${ref.digest ? `@${ref.digest}` : ""}`;
}

export function isLocalSource(text: string): boolean {
  return LOCAL_SOURCE_PREFIXES.some((prefix) => text.startsWith(prefix));
}

/** The default worker name for an image: the last path segment without tag or digest. */
export function workerNameFor(image: string): string {
  if (isLocalSource(image)) {
    const path = image.slice(image.indexOf(":") + 1).replace(/\/+$/, "");
    const base = path.slice(path.lastIndexOf("/") + 1).replace(/\.(tar|tar\.gz|tgz)$/, "");
    return base.toLowerCase().replace(/[^a-z0-9._-]/g, "-").replace(/^[^a-z0-9]+/, "") || "worker";
  }
  const withoutDigest = image.split("@")[0]!;
  const last = withoutDigest.slice(withoutDigest.lastIndexOf("/") + 1);
  return last.split(":")[0]!;
}
