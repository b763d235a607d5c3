// Host side of the concurrency test, in its own process so it does not share the stack's
// event loop: reads "<i>\n" and answers with payload i, then FIN. Prints the port.
import net from "node:net";
import { baseBlock, payloadFor } from "../guest/pattern.mjs";
const base = baseBlock(Number(process.argv[2] ?? 1048576));
const server = net.createServer({ allowHalfOpen: true, noDelay: true }, (s) => {
  let line = "";
  s.on("error", () => {});
  s.on("data", (d) => {
    line += d.toString();
    const nl = line.indexOf("\n");
    if (nl >= 0 && line !== "sent") {
      const i = Number(line.slice(0, nl));
      line = "sent";
      s.end(payloadFor(base, i));
    }
  });
});
server.listen({ port: 0, host: "127.0.0.1", backlog: 2048 }, () => console.log(server.address().port));
