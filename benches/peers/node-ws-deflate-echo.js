// Node `ws` echo server with permessage-deflate on at its defaults (context takeover,
// zlib's default level, 1 KiB threshold): the deflate peer of benches/deflate.sh.
// PORT from argv[2].
const { WebSocketServer } = require('ws');
const port = Number(process.argv[2] || 8001);
const wss = new WebSocketServer({ port, host: '127.0.0.1', perMessageDeflate: true, maxPayload: 16 * 1024 * 1024 });
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
});
wss.on('listening', () => console.error(`node ws deflate echo listening on ws://127.0.0.1:${port}`));
