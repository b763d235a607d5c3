import { describe, expect, it } from "vitest";
import { mergeEnv, parseImageConfig, resolveUser, workloadArgv } from "./runtime-config.js";

const passwd = "root:x:0:0:root:/root:/bin/sh\nnode:x:1000:1000::/home/node:/bin/sh\n";
const group = "root:x:0:\nnode:x:1000:\ndocker:x:999:node\n";

describe("image config", () => {
  it("splits Env at the first = and defaults PATH and WorkingDir", () => {
    const config = parseImageConfig({ config: { Env: ["A=b=c", "EMPTY", "=bad"] } });
    expect(config.env).toEqual({ A: "b=c", EMPTY: "", PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" });
    expect(config.workingDir).toBe("/");
  });

  it("resolves User forms through passwd and group", () => {
    expect(resolveUser("", passwd, group, "i")).toMatchObject({ uid: 0, gid: 0, home: "/root" });
    expect(resolveUser("node", passwd, group, "i")).toMatchObject({ uid: 1000, gid: 1000, additionalGids: [999], home: "/home/node" });
    expect(resolveUser("node:docker", passwd, group, "i")).toMatchObject({ uid: 1000, gid: 999 });
    expect(resolveUser("4242", passwd, group, "i")).toMatchObject({ uid: 4242, gid: 0 });
    expect(resolveUser("4242:77", undefined, undefined, "i")).toMatchObject({ uid: 4242, gid: 77 });
    expect(() => resolveUser("ghost", passwd, group, "img")).toThrow(/image img: User "ghost" is not in the image's \/etc\/passwd/);
  });

  it("worker command replaces Entrypoint+Cmd; worker env wins", () => {
    const config = { ...parseImageConfig({ config: { Entrypoint: ["/e"], Cmd: ["c"], Env: ["A=1", "B=2"] } }), user: resolveUser("", passwd, group, "i") };
    expect(workloadArgv(config)).toEqual(["/e", "c"]);
    expect(workloadArgv(config, ["/bin/sh"])).toEqual(["/bin/sh"]);
    expect(mergeEnv(config, { B: "3" })).toMatchObject({ A: "1", B: "3" });
  });
});
