// Guest side of the DNS load test: COUNT distinct queries sent at once over UDP to SERVER:53;
// prints how many answers came back, by rcode.
import dgram from "node:dgram";
const [server, count, suffix] = process.argv.slice(2);
const n = Number(count);
const s = dgram.createSocket({ type: "udp4", recvBufferSize: 4 * 1024 * 1024 });
const rcodes = {};
let answered = 0;
const seen = new Set();
function query(id, name) {
  const labels = name.split(".");
  const parts = [Buffer.from([id >> 8, id & 0xff, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0])];
  for (const l of labels) parts.push(Buffer.from([l.length]), Buffer.from(l));
  parts.push(Buffer.from([0, 0, 1, 0, 1]));
  return Buffer.concat(parts);
}
s.on("message", (m) => {
  const id = m.readUInt16BE(0);
  if (seen.has(id)) return;
  seen.add(id);
  const rc = m[3] & 0x0f;
  rcodes[rc] = (rcodes[rc] ?? 0) + 1;
  if (++answered === n) finish();
});
// Like a stub resolver, re-ask once what got no answer after 8 s (the guest kernel's own tap
// queue and socket buffers can drop a few datagrams of such a burst).
let retried = 0;
const retry = setTimeout(() => {
  for (let i = 0; i < n; i++) {
    if (!seen.has(i)) {
      retried++;
      s.send(query(i, `q${i}.${suffix}`), 53, server);
    }
  }
}, 8000);
const t0 = Date.now();
const timer = setTimeout(finish, 25000);
function finish() {
  clearTimeout(timer);
  clearTimeout(retry);
  console.log(JSON.stringify({ answered, rcodes, retried, ms: Date.now() - t0 }));
  s.close();
}
// Bursts of 200 per event-loop turn: all queries are outstanding together, but the guest's own
// tap queue (1000 frames) is not overrun before the stack reads it.
s.bind(0, () => {
  let i = 0;
  const burst = () => {
    for (let k = 0; k < 200 && i < n; k++, i++) s.send(query(i, `q${i}.${suffix}`), 53, server);
    if (i < n) setTimeout(burst, 1);
  };
  burst();
});
