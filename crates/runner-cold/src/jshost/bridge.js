// The handler host's bridge (docs/architecture.md, "JS handler host"): loads the app's
// handlers/*.js|ts as the Node core does (contract 9.1) and runs calls from the runner.
// Protocol: one JSON object per line each way on stdin/stdout (JSON.stringify never
// writes a raw newline). Handlers' console output goes to stderr, which the runner logs.
'use strict';
const Module = require('module');
const path = require('path');
const fs = require('fs');
const http = require('http');
const https = require('https');

const protoOut = process.stdout;
const protoWrite = protoOut.write.bind(protoOut);
// console.log from a handler must not corrupt the protocol.
process.stdout.write = process.stderr.write.bind(process.stderr);

const appDir = process.cwd();
const handlersDir = path.resolve(process.argv[2] || path.join(appDir, 'handlers'));

// ---- output: lines batched per event-loop turn, one write each ----
let outQueue = [];
let flushScheduled = false;
function send(msg) {
  outQueue.push(JSON.stringify(msg));
  if (!flushScheduled) {
    flushScheduled = true;
    setImmediate(flush);
  }
}
function flush() {
  flushScheduled = false;
  if (outQueue.length === 0) return;
  const text = outQueue.join('\n') + '\n';
  outQueue = [];
  protoWrite(text);
}

// ---- the Configurapi classes: the app's own package when it has one ----
function appRequire(name) {
  try {
    return require(require.resolve(name, { paths: [appDir] }));
  } catch (_) {
    return undefined;
  }
}

function builtinCore() {
  class Response {
    constructor(body = '', statusCode = 200, headers = {}) {
      this.statusCode = statusCode;
      this.body = body;
      this.headers = headers;
    }
  }
  class ErrorResponse extends Response {
    constructor(message, statusCode = 500, details = '') {
      super('', statusCode, { 'Content-Type': 'application/json' });
      this.error = message;
      this.message = message;
      this.details = details;
      if (message instanceof ErrorResponse) {
        this.message = message.message;
        this.details = message.details;
        this.statusCode = message.statusCode;
      } else if (message instanceof Error) {
        this.message = message.message;
        this.details = message.stack;
      }
      this.body = { statusCode: this.statusCode, message: this.message, details: this.details };
    }
    static isErrorResponse(obj) {
      return typeof obj === 'object' && obj !== null && 'statusCode' in obj && 'error' in obj
        && 'message' in obj && 'details' in obj && 'body' in obj;
    }
  }
  class Identity {
    constructor(id, claims = []) {
      this.id = id;
      this.claims = claims;
      this.issuer = undefined;
      this.name = undefined;
      this.email = undefined;
    }
    _scopes(c) { return Array.isArray(c.scope) ? c.scope : [c.scope]; }
    getClaim(type, value, scope) {
      return (this.claims || []).find((c) => c.type === type && c.value === value
        && this._scopes(c).some((s) => (s || '') === (scope || '')));
    }
    hasClaim(type, values, scopes) {
      const vs = Array.isArray(values) ? values : [values];
      const ss = Array.isArray(scopes) ? scopes : [scopes];
      return vs.some((v) => ss.some((s) => this.getClaim(type, v, s) !== undefined));
    }
    getClaims(type, value, scope) {
      return (this.claims || []).filter((c) => c.type === type && c.value === value
        && (c.scope === scope || this._scopes(c).includes(scope)));
    }
  }
  class Event {
    resolve(obj) {
      if (typeof obj === 'string') return this.resolveStr(obj);
      if (obj !== null && typeof obj === 'object') {
        for (const k in obj) obj[k] = this.resolve(obj[k]);
      }
      return obj;
    }
    resolveStr(str) {
      const byPath = (o, p) => {
        for (const k of p.replace(/\[(\w+)\]/g, '.$1').replace(/^\./, '').split('.')) {
          if (o !== null && typeof o === 'object' && k in o) o = o[k];
          else return undefined;
        }
        return o;
      };
      return str.replace(/\$\([^)]*\)/g, (match) => {
        const key = match.slice(2, -1);
        let value;
        if (key.startsWith('$env.')) value = process.env[key.slice(5)];
        else if (key.startsWith('$event.payload.') && this.payload) value = byPath(this.payload, key.slice(15));
        else if (key === '$event.payload' && this.payload) value = this.payload;
        else if (this.params[key] !== undefined) value = this.params[key];
        else if (key.includes('.')) {
          const i = key.indexOf('.');
          value = this.params[key.slice(0, i)];
          if (value !== null && typeof value === 'object') value = byPath(value, key.slice(i + 1));
        }
        return value === undefined ? match : String(value);
      });
    }
  }
  return { Response, ErrorResponse, Identity, Event };
}

const core = appRequire('configurapi') || builtinCore();
const { Response, ErrorResponse, Identity } = core;
const EventClass = core.Event;

// ---- modules the runner provides even when node_modules lacks them (issue 13 item 1) ----
class StreamResponse extends Response {
  constructor(stream, statusCode = 200, headers = {}) {
    super(stream, statusCode, headers);
  }
}

function wsPostbackFunction(url, response) {
  return new Promise((resolve, reject) => {
    const body = JSON.stringify({
      statusCode: response && response.statusCode !== undefined ? response.statusCode : 200,
      headers: (response && response.headers) || {},
      body: response && response.body !== undefined ? response.body : '',
    });
    const headers = { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) };
    const token = process.env.CONFIGURAPI_MANAGEMENT_TOKEN;
    if (token) headers.Authorization = `Bearer ${token}`;
    const secure = url.startsWith('https:');
    const lib = secure ? https : http;
    const options = { method: 'POST', headers };
    // With --management-tls the runner hands over the certificate its management API
    // serves: trusted beside Node's roots (and NODE_EXTRA_CA_CERTS'), read per call so
    // a reloaded certificate is seen.
    const ownCa = process.env.CONFIGURAPI_BRIDGE_POSTBACK_CA;
    if (secure && ownCa) {
      const ca = [...require('tls').rootCertificates];
      for (const file of [ownCa, process.env.NODE_EXTRA_CA_CERTS]) {
        try {
          if (file) ca.push(fs.readFileSync(file, 'utf8'));
        } catch (_) {
          // An unreadable extra file only narrows what is trusted.
        }
      }
      options.ca = ca;
    }
    const req = lib.request(url, options, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { text += d; });
      res.on('end', () => {
        if (res.statusCode >= 200 && res.statusCode < 300) resolve();
        else {
          const err = new Error(`postback to ${url} answered ${res.statusCode}${text ? `: ${text}` : ''}`);
          err.statusCode = res.statusCode;
          reject(err);
        }
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

const shims = {
  // The app's own configurapi wins; an app without one gets the built-in classes.
  configurapi: core,
  'configurapi-handler-ws': { StreamResponse },
  'configurapi-runner-ws': { wsPostbackFunction },
};
const SHIM_PREFIX = '\0configurapi-runner-ws-shim:';
for (const [name, exports] of Object.entries(shims)) {
  const m = new Module(SHIM_PREFIX + name);
  m.exports = exports;
  m.loaded = true;
  Module._cache[SHIM_PREFIX + name] = m;
}
const originalResolve = Module._resolveFilename;
Module._resolveFilename = function resolveWithShims(request, ...rest) {
  try {
    return originalResolve.call(this, request, ...rest);
  } catch (err) {
    if (Object.prototype.hasOwnProperty.call(shims, request)) return SHIM_PREFIX + request;
    throw err;
  }
};

// ---- loading handlers (9.1) ----
const handlers = new Map();
const loadErrors = [];

function typescriptLoader() {
  if (process.features && process.features.typescript) return 'node';
  for (const hook of ['tsx/cjs', 'ts-node/register/transpile-only', 'ts-node/register']) {
    try {
      require(require.resolve(hook, { paths: [appDir] }));
      return hook;
    } catch (_) { /* try the next */ }
  }
  return undefined;
}

function loadHandlers() {
  let files;
  try {
    files = fs.readdirSync(handlersDir).filter((f) => /\.[jt]s$/i.test(f)
      && fs.lstatSync(path.join(handlersDir, f)).isFile());
  } catch (err) {
    loadErrors.push(`${handlersDir}: ${err.message}`);
    return;
  }
  files.sort();
  let tsLoader = null;
  for (const file of files) {
    const full = path.join(handlersDir, file);
    if (/\.ts$/i.test(file)) {
      if (tsLoader === null) tsLoader = typescriptLoader();
      if (!tsLoader) {
        loadErrors.push(`${full}: this Node cannot load TypeScript (add tsx or ts-node to the app's node_modules, or use a Node with type stripping)`);
        continue;
      }
    }
    let exported;
    try {
      exported = require(full);
    } catch (err) {
      loadErrors.push(`${full}: ${err && err.message ? err.message.split('\n')[0] : String(err)}`);
      continue;
    }
    if (typeof exported === 'function') {
      if (exported.name) handlers.set(exported.name, exported);
    } else if (exported && typeof exported === 'object') {
      for (const key of Object.keys(exported)) {
        if (typeof exported[key] === 'function' && /handler$/i.test(key)) handlers.set(key, exported[key]);
      }
    }
  }
}

// ---- events in and out ----
function fromBase64(s) { return Buffer.from(s, 'base64'); }

function makeResponse(r) {
  if (!r) return new Response();
  let body = r.body;
  if (r.absent) body = undefined;
  else if (r.b64) body = fromBase64(body);
  if (r.error) {
    const e = Object.create(ErrorResponse.prototype);
    e.statusCode = r.statusCode;
    e.headers = r.headers || {};
    e.error = r.error.message;
    e.message = r.error.message;
    e.details = r.error.details;
    e.body = body;
    return e;
  }
  const resp = new Response(body, r.statusCode, r.headers || {});
  if (r.absent) resp.body = undefined;
  return resp;
}

function makeIdentity(i) {
  if (!i) return undefined;
  const id = new Identity(i.id, (i.claims || []).map((c) => ({ type: c.type, value: c.value, scope: c.scope === null ? undefined : c.scope })));
  if (i.issuer !== null && i.issuer !== undefined) id.issuer = i.issuer;
  if (i.name !== null && i.name !== undefined) id.name = i.name;
  if (i.email !== null && i.email !== undefined) id.email = i.email;
  return id;
}

const VERSION_RE = /^v\d+(\.\d+)*$/;

function makeEvent(e, callId) {
  const event = Object.create(EventClass.prototype);
  const rq = e.request;
  const payload = e.payloadAbsent ? undefined : (e.payloadB64 ? fromBase64(e.payload) : e.payload);
  const request = {
    name: rq.name, method: rq.method, headers: rq.headers, params: rq.params,
    // The same object as event.payload when the runner says so, as in the Node core.
    payload: rq.payloadSame ? payload
      : (rq.payloadAbsent ? undefined : (rq.payloadB64 ? fromBase64(rq.payload) : rq.payload)),
    query: rq.query, path: rq.path, pathAndQuery: rq.pathAndQuery,
  };
  if (e.push) {
    request.headers['push-function'] = (response) => pushResponse(callId, response);
  }
  event.id = e.id;
  event.correlationId = e.correlationId;
  event.versionRegExp = VERSION_RE;
  event.params = e.params;
  event.name = e.name;
  event.request = request;
  event.response = makeResponse(e.response);
  event.identity = makeIdentity(e.identity);
  event.payload = payload;
  event.method = e.method;
  if (e.version !== undefined && e.version !== null) event.version = e.version;
  return event;
}

function isStreamBody(body) {
  return body !== null && typeof body === 'object' && !Buffer.isBuffer(body)
    && typeof body[Symbol.asyncIterator] === 'function';
}

function isErrorResponse(r) {
  return r instanceof ErrorResponse || (ErrorResponse.isErrorResponse && ErrorResponse.isErrorResponse(r));
}

// A value as it goes back (9.3): send() stringifies each message at once, which drops
// functions, symbols and undefined fields, so no copy is made here.
function plain(v) {
  return v;
}

function encodeBody(out, body) {
  if (body === undefined) out.absent = true;
  else if (Buffer.isBuffer(body) || body instanceof Uint8Array) {
    out.body = Buffer.from(body).toString('base64');
    out.b64 = true;
  } else out.body = plain(body);
}

function encodeResponse(r) {
  if (r === null || typeof r !== 'object') {
    // A handler assigned something that is not a Response: keep Node's view of it as
    // a body-less 200 rather than failing.
    return { statusCode: 200, headers: {}, absent: true };
  }
  const out = { statusCode: typeof r.statusCode === 'number' ? r.statusCode : Number(r.statusCode) || 200, headers: plain(r.headers) || {} };
  if (isErrorResponse(r)) {
    out.error = { message: String(r.message), details: r.details === undefined ? '' : String(r.details) };
  }
  if (isStreamBody(r.body)) {
    out.stream = startStream(r.body);
  } else encodeBody(out, r.body);
  return out;
}

function encodeIdentity(i) {
  if (i === undefined || i === null) return undefined;
  const claims = Array.isArray(i.claims) ? i.claims : [];
  return {
    id: i.id === undefined || i.id === null ? '' : String(i.id),
    issuer: i.issuer, name: i.name, email: i.email,
    claims: claims.map((c) => ({ type: String(c.type), value: String(c.value), scope: c.scope })),
  };
}

function encodeEvent(event) {
  const out = {
    name: event.name === undefined || event.name === null ? '' : String(event.name),
    params: plain(event.params) || {},
    identity: encodeIdentity(event.identity),
    headers: {},
    response: encodeResponse(event.response),
  };
  // The push-function is a function: stringify leaves it out.
  out.headers = (event.request && event.request.headers) || {};
  if (event.payload === undefined) out.payloadAbsent = true;
  else if (Buffer.isBuffer(event.payload)) {
    out.payload = event.payload.toString('base64');
    out.payloadB64 = true;
  } else out.payload = plain(event.payload);
  return out;
}

// A thrown value as the core sees it (3.4.1).
function encodeError(err) {
  if (isErrorResponse(err)) {
    return { kind: 'response', statusCode: err.statusCode, message: String(err.message), details: err.details === undefined ? '' : String(err.details) };
  }
  if (err instanceof Error) {
    const status = typeof err.statusCode === 'number' ? err.statusCode : Number(err.statusCode) || undefined;
    return { kind: 'error', statusCode: status, message: err.message, details: err.stack || err.message };
  }
  return { kind: 'thrown', message: String(err) };
}

// ---- calls ----
const LOG_RANKS = { debug: 100, trace: 75, info: 25, warn: 25, error: 10 };

const live = new Map(); // call id -> true while running

function runCall(msg) {
  const handler = handlers.get(msg.name);
  let event;
  let state;
  let settled = false;
  live.set(msg.id, true);
  const finish = (err) => {
    if (settled) return;
    settled = true;
    if (!live.delete(msg.id)) return; // cancelled: past its deadline
    const reply = { t: 'done', id: msg.id, state: state === 'complete' ? 'complete' : 'continue' };
    try {
      if (err !== undefined) reply.error = encodeError(err);
      reply.event = encodeEvent(event);
    } catch (e) {
      reply.error = encodeError(e);
      delete reply.event;
    }
    send(reply);
  };
  try {
    event = makeEvent(msg.event, msg.id);
  } catch (err) {
    finish(err);
    return;
  }
  if (!handler) {
    finish(new Error(`Handler '${msg.name}' could not be found.`));
    return;
  }
  const context = {
    continue: () => { state = 'continue'; },
    complete: () => { state = 'complete'; },
    catch: (error) => finish(error === undefined ? new Error('undefined') : error),
    emit: (level, message) => {
      // The policy's logLevel (1.1.7, 3.5.1) decides, as in the Node core.
      if ((msg.logRank === undefined ? 75 : msg.logRank) < (LOG_RANKS[String(level).toLowerCase()] || 25)) return;
      send({ t: 'log', level: String(level), message: `${event.id} - ${event.correlationId} - ${message}` });
    },
  };
  try {
    const result = handler.apply(context, [event, ...(msg.params || [])]);
    if (result && typeof result.then === 'function') {
      result.then(() => finish(), (err) => finish(err === undefined ? new Error('undefined') : err));
    } else finish();
  } catch (err) {
    finish(err);
  }
}

// ---- push-function (6.4.1) ----
let nextPush = 1;
const pushes = new Map();
function pushResponse(callId, response) {
  return new Promise((resolve, reject) => {
    const id = nextPush++;
    pushes.set(id, { resolve, reject });
    let encoded;
    try {
      encoded = encodeResponse(response);
    } catch (err) {
      pushes.delete(id);
      reject(err);
      return;
    }
    // A pushed stream resolves once it has been sent to its end, as the Node runner's
    // push-function does (it awaits the whole stream).
    const stream = encoded.stream !== undefined ? streams.get(encoded.stream) : undefined;
    if (stream) {
      pushes.set(id, {
        resolve: () => stream.ended.then(resolve),
        reject,
      });
    }
    send({ t: 'push', id, call: callId, response: encoded });
  });
}

// ---- streams: a chunk leaves only with credit from the runner ----
let nextStream = 1;
const streams = new Map();
function startStream(body) {
  const id = nextStream++;
  const it = body[Symbol.asyncIterator]();
  const s = { id, it, body, credit: 0, pumping: false, done: false };
  s.ended = new Promise((resolve) => { s.markEnded = resolve; });
  streams.set(id, s);
  return id;
}

function endStream(s, err) {
  if (s.done) return;
  s.done = true;
  s.markEnded();
  streams.delete(s.id);
  const msg = { t: 'end', stream: s.id };
  if (err !== undefined) msg.error = encodeError(err);
  send(msg);
}

async function pumpStream(s) {
  if (s.pumping || s.done) return;
  s.pumping = true;
  try {
    while (s.credit > 0 && !s.done) {
      const { value, done } = await s.it.next();
      if (s.done) return;
      if (done) { endStream(s); return; }
      s.credit -= 1;
      const msg = { t: 'chunk', stream: s.id };
      if (Buffer.isBuffer(value) || value instanceof Uint8Array) {
        msg.chunk = Buffer.from(value).toString('base64');
        msg.b64 = true;
      } else if (typeof value === 'string') msg.chunk = value;
      else { msg.chunk = plain(value); msg.json = true; }
      send(msg);
    }
  } catch (err) {
    endStream(s, err);
  } finally {
    s.pumping = false;
  }
}

function cancelStream(id) {
  const s = streams.get(id);
  if (!s) return;
  s.done = true;
  s.markEnded();
  streams.delete(id);
  try {
    if (typeof s.body.destroy === 'function') s.body.destroy();
    else if (typeof s.it.return === 'function') s.it.return();
  } catch (_) { /* the producer is dropped either way */ }
}

// ---- input ----
function onMessage(msg) {
  switch (msg.t) {
    case 'call': runCall(msg); break;
    case 'cancel': live.delete(msg.id); break;
    case 'pushed': {
      const p = pushes.get(msg.id);
      if (!p) break;
      pushes.delete(msg.id);
      if (msg.error) {
        const err = new Error(msg.error.message);
        if (msg.error.statusCode) err.statusCode = msg.error.statusCode;
        p.reject(err);
      } else p.resolve();
      break;
    }
    case 'credit': {
      const s = streams.get(msg.stream);
      if (s) { s.credit += msg.n; pumpStream(s); }
      break;
    }
    case 'stop': cancelStream(msg.stream); break;
    default: break;
  }
}

let inBuf = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (data) => {
  inBuf += data;
  if (!data.includes('\n')) return;
  const lines = inBuf.split('\n');
  inBuf = lines.pop();
  for (const line of lines) {
    if (line.length === 0) continue;
    let msg;
    try { msg = JSON.parse(line); } catch (_) { continue; }
    onMessage(msg);
  }
});
// The runner closed the pipe: it is shutting down (every call it waited for is done).
process.stdin.on('end', () => { flush(); process.exit(0); });

// An unhandled rejection from a handler's stray promise must not end the host.
process.on('unhandledRejection', (err) => {
  process.stderr.write(`unhandled rejection: ${err && err.stack ? err.stack : err}\n`);
});

loadHandlers();
send({ t: 'ready', handlers: [...handlers.keys()], errors: loadErrors, node: process.version, configurapi: core === undefined ? 'none' : (appRequire('configurapi') ? 'app' : 'built-in') });
