// Load for benches/deflate.sh: CONNS connections each echo a 4 KiB JSON message
// MESSAGES times (one in flight per connection), every answer checked. Node `ws` as the
// client, offering permessage-deflate (its default offer) or not.
// usage: node deflate-client.js URL CONNS MESSAGES on|off
// Prints one JSON line: messages, the extension negotiated, wire bytes per message
// each way (socket byte counters, frames and all), seconds.
const WebSocket = require('ws');
const [url, conns, messages, deflate] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4]), process.argv[5]];
const items = [];
for (let i = 0; items.length === 0 || JSON.stringify(items).length < 4096 - 80; i++) {
  items.push({ id: i, name: `item-${i}`, price: i * 3 + 0.5, tags: ['alpha', 'beta'], ok: i % 2 === 0 });
}
const msg = JSON.stringify(items).slice(0, 4096);
const start = process.hrtime.bigint();
let done = 0, sent = 0, recv = 0, ext = '';
for (let c = 0; c < conns; c++) {
  const ws = new WebSocket(url, { perMessageDeflate: deflate === 'on' });
  let left = messages;
  ws.on('open', () => { ext = ws.extensions; ws.send(msg); });
  ws.on('message', (data) => {
    if (data.toString() !== msg) { console.error('bad echo'); process.exit(1); }
    if (--left > 0) { ws.send(msg); return; }
    sent += ws._socket.bytesWritten; recv += ws._socket.bytesRead;
    ws.close();
    if (++done === conns) {
      const secs = Number(process.hrtime.bigint() - start) / 1e9;
      const n = conns * messages;
      console.log(JSON.stringify({ messages: n, bytes: msg.length, extension: ext,
        wire_out_per_msg: +(sent / n).toFixed(1), wire_in_per_msg: +(recv / n).toFixed(1), secs: +secs.toFixed(2) }));
      process.exit(0);
    }
  });
  ws.on('error', (e) => { console.error(String(e)); process.exit(1); });
}
