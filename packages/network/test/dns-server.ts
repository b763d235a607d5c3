import { type ChildProcess, spawn } from "node:child_process";

/** dnsmasq on a private 127.x address with a test zone; killed by close(). */
export async function startDnsmasq(extraArgs: string[]): Promise<{ address: string; close(): Promise<void> }> {
  const address = `127.${50 + (process.pid % 150)}.${Math.floor(Math.random() * 250) + 1}.${Math.floor(Math.random() * 250) + 1}`;
  const child: ChildProcess = spawn(
    "dnsmasq",
    [
      "--keep-in-foreground",
      "--no-resolv",
      "--no-hosts",
      "--no-poll",
      "--conf-file=/dev/null",
      `--listen-address=${address}`,
      "--bind-interfaces",
      "--port=53",
      "--local-ttl=60",
      "--dns-forward-max=4096",
      "--cache-size=0",
      "--local=/test/",
      ...extraArgs,
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  let err = "";
  child.stderr?.on("data", (d: Buffer) => {
    err += d.toString();
  });
  // Wait until it answers on TCP (it binds UDP and TCP together).
  const net = await import("node:net");
  const deadline = Date.now() + 5000;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host: address, port: 53 });
      s.once("connect", () => {
        s.destroy();
        resolve(true);
      });
      s.once("error", () => resolve(false));
    });
    if (ok) break;
    if (Date.now() > deadline || child.exitCode !== null) throw new Error(`dnsmasq did not start: ${err}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    address,
    close: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once("close", () => resolve());
        child.kill("SIGKILL");
      }),
  };
}
