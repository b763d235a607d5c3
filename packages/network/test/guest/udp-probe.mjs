// Guest side: send UDP datagrams to HOST:PORT from a connected socket and report the
// first error (an ICMP unreachable shows up as ECONNREFUSED/EHOSTUNREACH) or replies.
import dgram from "node:dgram";
const [host, port] = process.argv.slice(2);
const s = dgram.createSocket(host.includes(":") ? "udp6" : "udp4");
const out = { replies: [], error: null };
s.on("message", (m) => out.replies.push(m.toString()));
s.on("error", (e) => {
  out.error = e.code;
});
s.connect(Number(port), host, () => {
  let i = 0;
  const tick = setInterval(() => {
    s.send(Buffer.from(`ping${i}`), (err) => {
      if (err && !out.error) out.error = err.code;
    });
    if (++i === 5) {
      clearInterval(tick);
      setTimeout(() => {
        console.log(JSON.stringify(out));
        s.close();
      }, 300);
    }
  }, 100);
});
