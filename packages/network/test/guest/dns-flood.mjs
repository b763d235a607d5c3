// Guest side of the DNS load test: COUNT distinct queries sent at once over UDP to SERVER:53;
// prints how many answers came back, by rcode.
import dgram from "node:dgram";
const [server, count, suffix] = process.argv.slice(2);
const n = Number(count);
const s = dgram.createSocket("udp4");
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
const timer = setTimeout(finish, 20000);
function finish() {
  clearTimeout(timer);
  console.log(JSON.stringify({ answered, rcodes }));
  s.close();
}
s.bind(0, () => {
  for (let i = 0; i < n; i++) s.send(query(i, `q${i}.${suffix}`), 53, server);
});
