// A Node Configurapi WebSocket runner built on configurapi@1.9.0 + ws, equivalent to
// what users run today (configurapi-runner-ws on npm, whose source is not published):
// it speaks the envelope protocol of docs/contract.md 6.2-6.4.
//
//   node node-configurapi-runner.js PORT [CONFIG]
//
// Client frame: {"name", "params"?, "query"?, "payload"?, "headers"?, "method"?}
// (invalid JSON: the raw text is the payload). Reply: one text frame
// {"statusCode", "headers": {..., "message-id"}, "body"}. A readable-stream body is sent
// as chunk frames (x-stream: chunk, x-stream-id) and a final x-stream: done frame, waiting
// while ws.bufferedAmount is over 1 MiB.
const path = require('path');
const crypto = require('crypto');
const { WebSocketServer } = require('ws');
const { Config, Service, Event, Request, ErrorResponse, LogLevel } = require('configurapi');

const port = Number(process.argv[2] || 8002);
const configPath = process.argv[3] || path.join(__dirname, 'node-runner-config.yaml');
const HIGH_WATER = 1 << 20;

const service = new Service(Config.load(configPath));
// The runner logs through these events; the benchmark discards them (an 'error' event
// with no listener would throw).
for (const level of Object.values(LogLevel)) service.on(level, () => {});

function isStream(body) {
  return body !== null && typeof body === 'object' && typeof body[Symbol.asyncIterator] === 'function'
    && typeof body.pipe === 'function';
}

function bodyValue(body) {
  if (body === undefined) return '';
  if (Buffer.isBuffer(body)) return { base64: body.toString('base64') };
  return body;
}

function envelope(response, messageId, extraHeaders) {
  const headers = Object.assign({}, response.headers || {}, extraHeaders || {});
  if (messageId !== undefined) headers['message-id'] = messageId;
  const env = { statusCode: response.statusCode, headers, body: '' };
  const b = bodyValue(response.body);
  if (b && b.base64 !== undefined) {
    env.body = b.base64;
    env.isBase64Encoded = true;
  } else {
    env.body = b;
  }
  return JSON.stringify(env);
}

function drain(ws) {
  return new Promise((resolve) => {
    const check = () => {
      if (ws.readyState !== ws.OPEN || ws.bufferedAmount <= HIGH_WATER) resolve();
      else setTimeout(check, 10);
    };
    check();
  });
}

async function sendResponse(ws, response, messageId) {
  if (!isStream(response.body)) {
    ws.send(envelope(response, messageId));
    return;
  }
  const streamId = crypto.randomUUID();
  const base = { statusCode: response.statusCode, headers: response.headers };
  try {
    for await (const chunk of response.body) {
      if (ws.readyState !== ws.OPEN) { response.body.destroy(); return; }
      if (ws.bufferedAmount > HIGH_WATER) await drain(ws);
      const body = Buffer.isBuffer(chunk) ? chunk.toString('utf8') : chunk;
      ws.send(envelope({ ...base, body }, messageId, { 'x-stream': 'chunk', 'x-stream-id': streamId }));
    }
    ws.send(envelope({ ...base, body: '' }, messageId, { 'x-stream': 'done', 'x-stream-id': streamId }));
  } catch (err) {
    const e = new ErrorResponse(err, 500);
    ws.send(envelope(e, messageId, { 'x-stream': 'done', 'x-stream-id': streamId }));
  }
}

function buildRequest(text, connectionId, ws) {
  const request = new Request('get');
  let msg;
  try {
    msg = JSON.parse(text);
  } catch (_) {
    msg = undefined;
  }
  const isMap = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
  if (isMap(msg)) {
    request.name = msg.name;
    if (typeof msg.method === 'string') request.method = msg.method.toLowerCase();
    request.query = isMap(msg.query) ? msg.query : {};
    request.params = msg.params !== undefined ? msg.params : {};
    request.headers = isMap(msg.headers) ? msg.headers : {};
    request.payload = 'payload' in msg ? msg.payload : undefined;
  } else {
    request.query = {};
    request.payload = text;
  }
  request.path = '';
  request.pathAndQuery = '';
  request.headers['connection-id'] = connectionId;
  request.headers['push-function'] = (response) => sendResponse(ws, response, undefined);
  return request;
}

const wss = new WebSocketServer({ port, host: '127.0.0.1', perMessageDeflate: false, maxPayload: 16 * 1024 * 1024 });
wss.on('connection', (ws) => {
  const connectionId = crypto.randomUUID();
  ws.on('message', async (data) => {
    const text = data.toString('utf8');
    let messageId;
    try {
      const request = buildRequest(text, connectionId, ws);
      messageId = request.headers['message-id'];
      const event = new Event(request);
      event.params = Object.assign({}, request.params, request.query);
      await service.process(event);
      await sendResponse(ws, event.response, messageId);
    } catch (err) {
      const code = err instanceof SyntaxError ? 400 : 500;
      if (ws.readyState === ws.OPEN) ws.send(envelope(new ErrorResponse(err, code), messageId));
    }
  });
});
wss.on('listening', () => console.error(`node configurapi runner listening on ws://127.0.0.1:${port}`));
// on_start runs before the first message is handled (Service.process waits for it too).
service.init();
