// Load for benches/deflate.sh: CONNS connections each echo 4 KiB JSON messages
// MESSAGES times (one in flight per connection), every answer checked. Node `ws` as the
// client, offering permessage-deflate (its default offer) or not.
// usage: node deflate-client.js URL CONNS MESSAGES on|off
// Prints one JSON line: messages, the extension negotiated, wire bytes per message
// each way (socket byte counters, frames and all), seconds.
const WebSocket = require('ws');
const [url, conns, messages, deflate] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4]), process.argv[5]];
// Messages differ from each other (a sequence number and pseudo-random values), as API
// answers do, so context takeover cannot just point back at the previous message.
let seed = 12345;
const rnd = () => (seed = (seed * 1103515245 + 12345) % 2147483648);
function makeMsg(seq) {
  const items = [];
  for (let i = 0; JSON.stringify(items).length < 4096 - 120; i++) {
    items.push({ id: seq * 100 + i, name: `item-${rnd() % 100000}`, price: (rnd() % 100000) / 100, tags: ['alpha', 'beta'], ok: rnd() % 2 === 0 });
  }
  return JSON.stringify({ seq, items }).slice(0, 4096);
}
const pool = Array.from({ length: 64 }, (_, i) => makeMsg(i));
const msgLen = pool[0].length;
const start = process.hrtime.bigint();
let done = 0, sent = 0, recv = 0, ext = '';
for (let c = 0; c < conns; c++) {
  const ws = new WebSocket(url, { perMessageDeflate: deflate === 'on' });
  let left = messages;
  let msg = pool[c % pool.length];
  ws.on('open', () => { ext = ws.extensions; ws.send(msg); });
  ws.on('message', (data) => {
    if (data.toString() !== msg) { console.error('bad echo'); process.exit(1); }
    msg = pool[(c + left) % pool.length];
    if (--left > 0) { ws.send(msg); return; }
    sent += ws._socket.bytesWritten; recv += ws._socket.bytesRead;
    ws.close();
    if (++done === conns) {
      const secs = Number(process.hrtime.bigint() - start) / 1e9;
      const n = conns * messages;
      console.log(JSON.stringify({ messages: n, bytes: msgLen, extension: ext,
        wire_out_per_msg: +(sent / n).toFixed(1), wire_in_per_msg: +(recv / n).toFixed(1), secs: +secs.toFixed(2) }));
      process.exit(0);
    }
  });
  ws.on('error', (e) => { console.error(String(e)); process.exit(1); });
}
