//! Fuzzing entry points, shared by the cargo-fuzz targets in `fuzz/` and by
//! `tests/fuzz_corpus.rs`, which replays the committed corpus through the same functions.
//!
//! Each function takes arbitrary bytes, drives one parser the way the server does, and
//! panics only when an invariant breaks. The incremental targets (`frame`, `upgrade`,
//! `mgmt_http`) start with a small prefix that picks limits and where the input is cut
//! into reads (see [`Feed`]), so limit paths and split headers are reached.
//!
//! Not a stable API: hidden from the docs and free to change with the fuzz targets.

use std::sync::OnceLock;

use serde_json::Value;

use crate::configurapi::{Config, ErrorResponse, Event, Service};
use crate::http::{HttpError, HttpParser, HttpRequest, Parsed};
use crate::runner;
use crate::ws::frame::{Decoder, Incoming, Limits};
use crate::ws::handshake::{
    accept_key, parse_request, read_head, HandshakeError, HandshakeLimits, UpgradeRequest,
};
use crate::ws::{close_code, error::is_valid_close_code, ProtocolError};

/// An input cut into two limit bytes, read sizes, and the payload.
///
/// Layout: `[lim0, lim1, n, len_1 .. len_n, payload...]`. The payload is fed in reads of
/// `len_1, .., len_n` bytes, cycling, zero lengths skipped; `n == 0` (`n` is taken mod 8)
/// feeds it one byte at a time. Missing bytes count as zero.
struct Feed<'a> {
    lim0: u8,
    lim1: u8,
    lens: &'a [u8],
    payload: &'a [u8],
}

impl<'a> Feed<'a> {
    fn new(data: &'a [u8]) -> Feed<'a> {
        let byte = |i: usize| data.get(i).copied().unwrap_or(0);
        let n = (byte(2) % 8) as usize;
        let start = (3 + n).min(data.len());
        Feed {
            lim0: byte(0),
            lim1: byte(1),
            lens: &data[3.min(data.len())..start],
            payload: &data[start..],
        }
    }

    /// The payload cut into reads (never empty ones).
    fn chunks(&self) -> Vec<&'a [u8]> {
        let mut out = Vec::new();
        let mut rest = self.payload;
        let mut i = 0;
        while !rest.is_empty() {
            let len = if self.lens.is_empty() {
                1
            } else {
                self.lens[i % self.lens.len()] as usize
            };
            i += 1;
            if len == 0 {
                if self.lens.iter().all(|&l| l == 0) {
                    out.push(rest);
                    break;
                }
                continue;
            }
            let (a, b) = rest.split_at(len.min(rest.len()));
            out.push(a);
            rest = b;
        }
        out
    }
}

// ---------------------------------------------------------------------------------
// frame

/// An owned [`Incoming`], to compare runs.
#[derive(Debug, PartialEq, Eq)]
enum Item {
    Text(Vec<u8>),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<(u16, Vec<u8>)>),
}

fn check_item(item: &Incoming<'_>, limits: &Limits) -> Item {
    match *item {
        Incoming::Text(s) => {
            assert!(s.len() <= limits.max_message, "message over the limit");
            Item::Text(s.as_bytes().to_vec())
        }
        Incoming::Binary(b) => {
            assert!(b.len() <= limits.max_message, "message over the limit");
            Item::Binary(b.to_vec())
        }
        Incoming::Ping(b) => {
            assert!(b.len() <= 125, "control frame over 125 bytes");
            Item::Ping(b.to_vec())
        }
        Incoming::Pong(b) => {
            assert!(b.len() <= 125, "control frame over 125 bytes");
            Item::Pong(b.to_vec())
        }
        Incoming::Close(c) => {
            if let Some((code, reason)) = c {
                assert!(is_valid_close_code(code), "close code {code} let through");
                assert!(
                    std::str::from_utf8(reason).is_ok(),
                    "close reason not UTF-8"
                );
                assert!(reason.len() <= 123, "close reason too long");
            }
            Item::Close(c.map(|(c, r)| (c, r.to_vec())))
        }
        Incoming::Compressed { .. } => panic!("RSV1 let through without deflate"),
    }
}

fn check_error(e: &ProtocolError) {
    let code = e.close_code();
    assert!(
        [
            close_code::PROTOCOL_ERROR,
            close_code::INVALID_PAYLOAD,
            close_code::MESSAGE_TOO_BIG
        ]
        .contains(&code),
        "{e:?} maps to close code {code}"
    );
    assert!(is_valid_close_code(code), "{e:?}: {code} may not be sent");
    assert!(e.reason().len() <= 123, "{e:?}: reason too long");
}

/// Feed `chunks` to a fresh decoder as the reactor does (every read decoded to the end,
/// buffers released between reads), collecting items until the first error.
fn run_decoder(chunks: &[&[u8]], limits: Limits) -> (Vec<Item>, Option<ProtocolError>) {
    let mut dec = Decoder::new();
    let mut items = Vec::new();
    for chunk in chunks {
        let mut data = chunk.to_vec();
        let mut pos = 0;
        while pos < data.len() {
            let left = data.len() - pos;
            match dec.decode(&mut data[pos..], &limits) {
                Ok((used, item)) => {
                    assert!(used <= left, "decoder used {used} of {left} bytes");
                    assert!(used > 0, "decoder made no progress on {left} bytes");
                    if let Some(item) = item {
                        items.push(check_item(&item, &limits));
                    }
                    pos += used;
                }
                Err(e) => {
                    check_error(&e);
                    return (items, Some(e));
                }
            }
        }
        dec.release_buffers();
    }
    (items, None)
}

/// RFC 6455 frame decoding and message reassembly ([`Decoder`]).
///
/// `lim0 * 4` is the frame limit and `lim1 * 8` the message limit. Checks: no panic,
/// errors map to a close code the server may send, items are valid (UTF-8 text, messages
/// within the limit, control payloads of at most 125 bytes, valid close codes), and the
/// reads the input is cut into change nothing: the same items and error as one read.
pub fn frame(data: &[u8]) {
    let feed = Feed::new(data);
    let limits = Limits {
        max_frame: feed.lim0 as u64 * 4,
        max_message: feed.lim1 as usize * 8,
    };
    let split = run_decoder(&feed.chunks(), limits);
    let whole = run_decoder(&[feed.payload], limits);
    assert_eq!(split, whole, "the reads changed the outcome");
}

// ---------------------------------------------------------------------------------
// upgrade

/// What the reactor concluded from an upgrade request fed in `chunks`: `None` while it
/// still waits for bytes, and the bytes it holds.
type UpgradeOutcome = Option<Result<(UpgradeRequest, usize), HandshakeError>>;

fn run_upgrade(chunks: &[&[u8]], limits: &HandshakeLimits) -> (UpgradeOutcome, Vec<u8>) {
    let mut buf: Vec<u8> = Vec::new();
    for chunk in chunks {
        match read_head(&mut buf, chunk, limits) {
            Ok(None) => {}
            Ok(Some(r)) => return (Some(Ok(r)), buf),
            Err(e) => return (Some(Err(e)), buf),
        }
    }
    (None, buf)
}

/// The upgrade request reader the reactor runs ([`read_head`]), fed in the reads the input
/// is cut into: bytes accumulate and the parser runs once a blank line may be there, the
/// limit is hit, or three CR/LF bytes lead.
///
/// `lim0` sets the byte limit (`64 + lim0 * 16`), `lim1` the header count (`1 + lim1 % 32`).
/// Checks: no panic; the reads the input is cut into change nothing; the reactor's
/// skipping never misses a complete head; a request parses the same from exactly its
/// head bytes; the 101 answer is a valid response with the right accept key and a token
/// subprotocol; every refusal is a valid response.
pub fn upgrade(data: &[u8]) {
    let feed = Feed::new(data);
    let limits = HandshakeLimits {
        max_bytes: 64 + feed.lim0 as usize * 16,
        max_headers: 1 + (feed.lim1 % 32) as usize,
    };
    let (outcome, buf) = run_upgrade(&feed.chunks(), &limits);
    let (whole, _) = run_upgrade(&[feed.payload], &limits);
    assert_eq!(outcome, whole, "the reads changed the outcome");
    match outcome {
        None => {
            assert!(
                !matches!(parse_request(&buf, &limits), Ok(Some(_))),
                "the reactor skipped a complete head"
            );
        }
        Some(Ok((req, used))) => {
            assert!(used <= buf.len() && used <= limits.max_bytes);
            assert_eq!(
                parse_request(&buf[..used], &limits),
                Ok(Some((req.clone(), used))),
                "the head parses differently on its own"
            );
            if let Some(p) = &req.subprotocol {
                assert!(
                    !p.is_empty() && p.bytes().all(is_tchar),
                    "subprotocol {p:?}"
                );
            }
            let response = req.response();
            let mut headers = [httparse::EMPTY_HEADER; 8];
            let mut r = httparse::Response::new(&mut headers);
            assert_eq!(
                r.parse(&response),
                Ok(httparse::Status::Complete(response.len())),
                "101 answer is not one HTTP response"
            );
            assert_eq!(r.code, Some(101));
            let accept = r
                .headers
                .iter()
                .find(|h| h.name == "Sec-WebSocket-Accept")
                .expect("accept header");
            assert_eq!(accept.value, accept_key(&req.key).as_bytes());
            assert_eq!(accept.value.len(), 28);
        }
        Some(Err(e)) => {
            assert!([400, 405, 426, 431, 503].contains(&e.status()), "{e:?}");
            let response = e.response();
            let mut headers = [httparse::EMPTY_HEADER; 8];
            let mut r = httparse::Response::new(&mut headers);
            let head = match r.parse(&response) {
                Ok(httparse::Status::Complete(n)) => n,
                other => panic!("refusal is not an HTTP response: {other:?}"),
            };
            assert_eq!(r.code, Some(e.status()));
            assert_eq!(response.len() - head, e.reason().len());
        }
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

// ---------------------------------------------------------------------------------
// mgmt_http

/// Feed `chunks` to a fresh parser as the management session does: every complete
/// request is taken and the rest of the read fed again, until the parser wants more, an
/// error, or the connection is to close.
fn run_http(
    chunks: &[&[u8]],
    limits: crate::http::Limits,
) -> (Vec<HttpRequest>, Option<HttpError>) {
    let mut parser = HttpParser::new(limits);
    let mut requests = Vec::new();
    for chunk in chunks {
        let mut input: &[u8] = chunk;
        loop {
            if parser.is_closed() {
                return (requests, None);
            }
            match parser.feed(input) {
                Ok(Parsed::Request { request, consumed }) => {
                    assert!(
                        consumed <= input.len(),
                        "consumed {consumed} of {}",
                        input.len()
                    );
                    assert!(consumed > 0 || input.is_empty(), "a request from no bytes");
                    input = &input[consumed..];
                    check_request(&request, &limits);
                    requests.push(request);
                }
                Ok(Parsed::NeedMore) => {
                    let _ = parser.take_continue();
                    break;
                }
                Err(e) => {
                    assert!([400, 413, 417, 431, 501, 505].contains(&e.status), "{e:?}");
                    assert!(parser.is_closed(), "parser open after an error");
                    return (requests, Some(e));
                }
            }
        }
    }
    (requests, None)
}

fn check_request(r: &HttpRequest, limits: &crate::http::Limits) {
    assert!(r.body.len() <= limits.max_body, "body over the limit");
    assert!(!r.method.is_empty());
    assert!(
        r.path.starts_with('/') || r.path == "*",
        "path {:?} from target {:?}",
        r.path,
        r.target
    );
    for (name, _) in &r.headers {
        assert!(
            !name.bytes().any(|b| b.is_ascii_uppercase()),
            "header name {name:?} not lowercased"
        );
    }
}

/// The management API's HTTP/1.1 request parser ([`HttpParser`]), pipelined requests and
/// chunked bodies included.
///
/// `lim0` sets the head limit (`32 + lim0 * 4`), `lim1` the header count
/// (`1 + (lim1 & 15) * 2`) and the body limit (`(lim1 >> 4) * 64`). Checks: no panic,
/// only the documented statuses, requests within the limits, and the reads the input is
/// cut into change nothing: the same requests and error as one read.
pub fn mgmt_http(data: &[u8]) {
    let feed = Feed::new(data);
    let limits = crate::http::Limits {
        max_head_bytes: 32 + feed.lim0 as usize * 4,
        max_headers: 1 + (feed.lim1 & 15) as usize * 2,
        max_body: (feed.lim1 >> 4) as usize * 64,
    };
    let split = run_http(&feed.chunks(), limits);
    let whole = run_http(&[feed.payload], limits);
    assert_eq!(split, whole, "the reads changed the outcome");
}

// ---------------------------------------------------------------------------------
// message

fn default_service() -> &'static Service {
    static SERVICE: OnceLock<Service> = OnceLock::new();
    SERVICE.get_or_init(|| {
        Service::from_str(
            runner::DEFAULT_CONFIG,
            "default_config.yaml",
            runner::registry(),
        )
        .expect("the built-in config loads")
    })
}

/// A WebSocket message to an Event and through the built-in config's routes, as the
/// runner does (docs/protocol.md): decode the JSON envelope, build the Event, process it,
/// encode the answer frame.
///
/// The input is the message payload, tried as a text frame (when it is UTF-8) and as a
/// binary frame. Checks: no panic; the method is lowercase; the answer frame is one JSON
/// object with a numeric `statusCode` that echoes the request's `message-id`.
pub fn message(data: &[u8]) {
    let service = default_service();
    let is_utf8 = std::str::from_utf8(data).is_ok();
    for text in [true, false] {
        if text && !is_utf8 {
            continue;
        }
        let (frame, message_id) = match runner::decode_message(text, data) {
            Err(e) => {
                let (err, message_id) = *e;
                let response = ErrorResponse::from_error(&err, 400).to_response();
                (
                    crate::envelope::encode(&response, message_id.as_ref()),
                    message_id,
                )
            }
            Ok((request, message_id)) => {
                assert_eq!(request.method, request.method.to_lowercase());
                let merged = runner::merge_params(&request.params, &request.query);
                let mut event = Event::new(request);
                event.params = merged;
                let mut response = match service.process(&mut event) {
                    Ok(()) => std::mem::take(&mut event.response),
                    Err(e) => ErrorResponse::from_error(&e, 500).to_response(),
                };
                if response.take_stream().is_some() {
                    continue;
                }
                (
                    crate::envelope::encode(&response, message_id.as_ref()),
                    message_id,
                )
            }
        };
        let v: Value = serde_json::from_slice(&frame).expect("the answer frame is JSON");
        let status = v
            .get("statusCode")
            .and_then(Value::as_u64)
            .expect("a numeric statusCode");
        assert!((100..=999).contains(&status), "status {status}");
        assert!(v.get("headers").is_some_and(Value::is_object));
        if let Some(id) = message_id {
            // #17 json-decode: the id as decoded, compared as its value.
            let id = id.into_value();
            assert_eq!(v["headers"].get("message-id"), Some(&id), "message-id echo");
        }
    }
}

// ---------------------------------------------------------------------------------
// config

/// The config loader ([`Config::parse`]) and the binding of its routes to the runner's
/// handlers ([`Service::from_config`], skipped when there is an `on_start` route, which
/// would run handlers).
///
/// The input is the YAML text (invalid UTF-8 is replaced). Checks: no panic; errors
/// display on one line; a loaded config has one route per name and no empty handler name.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for node_env in [None, Some("production")] {
        match Config::parse(&text, "fuzz.yaml", node_env) {
            Err(e) => {
                let shown = e.to_string();
                assert!(
                    !shown.contains(['\n', '\r']),
                    "error not one line: {shown:?}"
                );
            }
            Ok(config) => {
                let mut names: Vec<&str> = config.routes.iter().map(|r| r.name.as_str()).collect();
                names.sort_unstable();
                let n = names.len();
                names.dedup();
                assert_eq!(names.len(), n, "two routes of one name");
                for route in &config.routes {
                    for p in &route.policies {
                        assert!(!p.handler.is_empty(), "empty handler name");
                    }
                }
                if config.routes.iter().any(|r| r.name == "on_start") {
                    continue;
                }
                if let Err(e) = Service::from_config(config, &runner::registry(), "fuzz.yaml") {
                    let shown = e.to_string();
                    assert!(
                        !shown.contains(['\n', '\r']),
                        "error not one line: {shown:?}"
                    );
                }
            }
        }
    }
}
