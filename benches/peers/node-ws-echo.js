// Node `ws` echo server: the peer users compare against. PORT from argv[2].
const { WebSocketServer } = require('ws');
const port = Number(process.argv[2] || 8001);
const wss = new WebSocketServer({ port, host: '127.0.0.1', perMessageDeflate: false, maxPayload: 16 * 1024 * 1024 });
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
});
wss.on('listening', () => console.error(`node ws echo listening on ws://127.0.0.1:${port}`));
