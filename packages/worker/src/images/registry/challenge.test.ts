import { describe, expect, it } from "vitest";
import { parseAuthChallenges } from "./challenge.js";

describe("WWW-Authenticate parsing", () => {
  it("parses a bearer challenge with quoted commas", () => {
    expect(parseAuthChallenges('Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push"')).toEqual([
      { scheme: "bearer", params: { realm: "https://auth.example/token", service: "registry.example", scope: "repository:a/b:pull,push" } },
    ]);
  });

  it("parses basic and several challenges", () => {
    expect(parseAuthChallenges('Basic realm="Registry Realm"')).toEqual([{ scheme: "basic", params: { realm: "Registry Realm" } }]);
    expect(parseAuthChallenges('Basic realm="a", Bearer realm="b",service=s')).toEqual([
      { scheme: "basic", params: { realm: "a" } },
      { scheme: "bearer", params: { realm: "b", service: "s" } },
    ]);
  });
});
