//! The server side of the HTTP/1.1 upgrade (RFC 6455 section 4.2), sans-IO.
//!
//! [`parse_request`] is fed the bytes received so far and answers "need more", a parsed
//! upgrade request with the number of bytes its head used (anything after that is
//! already WebSocket frames), or a [`HandshakeError`] that names the HTTP status to send.

use base64::Engine;
use sha1::{Digest, Sha1};

/// Limits on the request head.
#[derive(Debug, Clone, Copy)]
pub struct HandshakeLimits {
    /// Most bytes the head may take, request line included.
    pub max_bytes: usize,
    /// Most header lines.
    pub max_headers: usize,
}

impl Default for HandshakeLimits {
    fn default() -> Self {
        HandshakeLimits {
            max_bytes: 16 * 1024,
            max_headers: 100,
        }
    }
}

/// A valid upgrade request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeRequest {
    /// The request target, e.g. `/chat?token=abc`.
    pub target: String,
    /// Header names lowercased, values as sent (invalid UTF-8 replaced), in order.
    pub headers: Vec<(String, String)>,
    /// The `Sec-WebSocket-Key` value.
    pub key: String,
    /// The first subprotocol the client offered, echoed in the answer (Node `ws` default).
    pub subprotocol: Option<String>,
}

impl UpgradeRequest {
    /// The `101 Switching Protocols` answer.
    pub fn response(&self) -> Vec<u8> {
        self.response_with(None)
    }

    /// The `101` answer with a `Sec-WebSocket-Extensions` value (deflate: the accepted
    /// permessage-deflate offer).
    pub fn response_with(&self, extensions: Option<&str>) -> Vec<u8> {
        let mut out = Vec::with_capacity(160);
        out.extend_from_slice(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
        );
        out.extend_from_slice(accept_key(&self.key).as_bytes());
        if let Some(p) = &self.subprotocol {
            out.extend_from_slice(b"\r\nSec-WebSocket-Protocol: ");
            out.extend_from_slice(p.as_bytes());
        }
        if let Some(e) = extensions {
            out.extend_from_slice(b"\r\nSec-WebSocket-Extensions: ");
            out.extend_from_slice(e.as_bytes());
        }
        out.extend_from_slice(b"\r\n\r\n");
        out
    }

    /// The values of every `Sec-WebSocket-Extensions` header, in order.
    pub fn extension_offers(&self) -> impl Iterator<Item = &str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == "sec-websocket-extensions")
            .map(|(_, v)| v.as_str())
    }

    /// The path part of the target, without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// The query string of the target, without `?` (empty when there is none).
    pub fn query(&self) -> &str {
        self.target.split_once('?').map(|(_, q)| q).unwrap_or("")
    }
}

/// Why an upgrade was refused; each maps to one HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeError {
    /// The head is not valid HTTP/1.1, or the upgrade headers are wrong. 400.
    BadRequest(&'static str),
    /// `Sec-WebSocket-Key` missing or not 16 bytes of base64. 400.
    BadKey,
    /// A method other than GET. 405.
    MethodNotAllowed,
    /// A plain HTTP request without `Upgrade: websocket`. 426.
    UpgradeRequired,
    /// `Sec-WebSocket-Version` missing or not 13. 426 with `Sec-WebSocket-Version: 13`.
    UnsupportedVersion,
    /// The head is over the byte or header-count limit. 431.
    HeadersTooLarge,
    /// The server holds its maximum number of connections. 503 with `Retry-After`.
    Overloaded,
    /// The server is draining for shutdown (9.5). 503 with `Retry-After`.
    Draining,
}

impl HandshakeError {
    /// The HTTP status code.
    pub fn status(&self) -> u16 {
        match self {
            HandshakeError::BadRequest(_) | HandshakeError::BadKey => 400,
            HandshakeError::MethodNotAllowed => 405,
            HandshakeError::UpgradeRequired | HandshakeError::UnsupportedVersion => 426,
            HandshakeError::HeadersTooLarge => 431,
            HandshakeError::Overloaded | HandshakeError::Draining => 503,
        }
    }

    /// A label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            HandshakeError::BadRequest(why) => why,
            HandshakeError::BadKey => "missing or malformed Sec-WebSocket-Key",
            HandshakeError::MethodNotAllowed => "method not allowed",
            HandshakeError::UpgradeRequired => "upgrade required",
            HandshakeError::UnsupportedVersion => "unsupported Sec-WebSocket-Version",
            HandshakeError::HeadersTooLarge => "request header fields too large",
            HandshakeError::Overloaded => "server at its connection limit",
            HandshakeError::Draining => "server shutting down",
        }
    }

    /// The complete HTTP answer; the server closes the connection after sending it.
    pub fn response(&self) -> Vec<u8> {
        let status = self.status();
        let phrase = match status {
            400 => "Bad Request",
            405 => "Method Not Allowed",
            426 => "Upgrade Required",
            503 => "Service Unavailable",
            _ => "Request Header Fields Too Large",
        };
        let body = self.reason();
        let mut extra = String::new();
        match self {
            HandshakeError::UnsupportedVersion => extra.push_str("Sec-WebSocket-Version: 13\r\n"),
            HandshakeError::UpgradeRequired => extra.push_str("Upgrade: websocket\r\n"),
            HandshakeError::MethodNotAllowed => extra.push_str("Allow: GET\r\n"),
            HandshakeError::Overloaded | HandshakeError::Draining => {
                extra.push_str("Retry-After: 1\r\n")
            }
            _ => {}
        }
        format!(
            "HTTP/1.1 {status} {phrase}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{extra}\r\n{body}",
            body.len()
        )
        .into_bytes()
    }
}

/// The incremental upgrade-head reader: the reactor calls it with each read, and the fuzz
/// target drives exactly it. `data` is appended to `buf` (the bytes held so far), and the
/// head is parsed ([`parse_request`]) only once its blank line may be there or the limit
/// is hit, so a head that trickles in byte by byte is not re-parsed at every byte. Three
/// CR/LF bytes before the request line are refused at once (see [`parse_request`]), so a
/// run of empty lines is answered, not accumulated. `Ok(None)`: more bytes are needed.
pub fn read_head(
    buf: &mut Vec<u8>,
    data: &[u8],
    limits: &HandshakeLimits,
) -> Result<Option<(UpgradeRequest, usize)>, HandshakeError> {
    // The blank line may straddle the previous read's end.
    let scan_from = buf.len().saturating_sub(3);
    buf.extend_from_slice(data);
    let has_end = crate::http::may_end_head(buf, scan_from)
        || (buf.len() >= 3 && buf[..3].iter().all(|&b| b == b'\r' || b == b'\n'));
    if !has_end && buf.len() < limits.max_bytes {
        return Ok(None);
    }
    parse_request(buf, limits)
}

/// Parse the upgrade request in `buf`. `Ok(None)` means the head is not complete yet.
pub fn parse_request(
    buf: &[u8],
    limits: &HandshakeLimits,
) -> Result<Option<(UpgradeRequest, usize)>, HandshakeError> {
    // One empty line before the request line is ignored (RFC 9112 2.2): at most two CR
    // or LF bytes; more are refused, so a run of empty lines cannot hold a connection.
    let leading_blank = buf
        .iter()
        .take(3)
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    if leading_blank > 2 {
        return Err(HandshakeError::BadRequest(
            "empty lines before the request line",
        ));
    }
    // Only the bytes within the limit are looked at: what a head holds past it cannot
    // change the answer (431), however the reads cut the input.
    let buf = &buf[..buf.len().min(limits.max_bytes)];
    let mut headers = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut req = httparse::Request::new(&mut headers);
    let used = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() >= limits.max_bytes {
                return Err(HandshakeError::HeadersTooLarge);
            }
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HandshakeError::HeadersTooLarge),
        Err(_) => return Err(HandshakeError::BadRequest("malformed HTTP request")),
    };
    if used > limits.max_bytes {
        return Err(HandshakeError::HeadersTooLarge);
    }
    if req.method != Some("GET") {
        return Err(HandshakeError::MethodNotAllowed);
    }
    if req.version != Some(1) {
        return Err(HandshakeError::BadRequest("HTTP/1.1 required"));
    }
    let mut upgrade = false;
    let mut connection_upgrade = false;
    let mut version = None;
    let mut key = None;
    let mut subprotocol = None;
    let mut list = Vec::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let name = h.name.to_ascii_lowercase();
        let value = String::from_utf8_lossy(h.value).into_owned();
        match name.as_str() {
            "upgrade" => upgrade |= has_token(&value, "websocket"),
            "connection" => connection_upgrade |= has_token(&value, "upgrade"),
            "sec-websocket-version" => version = Some(value.trim().to_string()),
            "sec-websocket-key" => {
                if key.is_some() {
                    return Err(HandshakeError::BadKey);
                }
                key = Some(value.trim().to_string());
            }
            "sec-websocket-protocol" if subprotocol.is_none() => {
                subprotocol = Some(first_subprotocol(&value)?);
            }
            _ => {}
        }
        list.push((name, value));
    }
    if !upgrade {
        return Err(HandshakeError::UpgradeRequired);
    }
    if !connection_upgrade {
        return Err(HandshakeError::BadRequest(
            "Connection header lacks 'upgrade'",
        ));
    }
    if version.as_deref() != Some("13") {
        return Err(HandshakeError::UnsupportedVersion);
    }
    let key = key.ok_or(HandshakeError::BadKey)?;
    match base64::engine::general_purpose::STANDARD.decode(&key) {
        Ok(raw) if raw.len() == 16 => {}
        _ => return Err(HandshakeError::BadKey),
    }
    let target = req.path.unwrap_or("/").to_string();
    Ok(Some((
        UpgradeRequest {
            target,
            headers: list,
            key,
            subprotocol,
        },
        used,
    )))
}

/// `Sec-WebSocket-Accept` for a client key (RFC 6455 4.2.2 step 5.4).
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// Whether the comma-separated `list` holds `token` (ASCII case-insensitive).
fn has_token(list: &str, token: &str) -> bool {
    list.split(',')
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// The first offered subprotocol. Only the first list item is looked at, so a header
/// built to be expensive (thousands of items) costs one scan to the first comma.
fn first_subprotocol(value: &str) -> Result<String, HandshakeError> {
    let first = value.split(',').next().unwrap_or("").trim();
    let is_tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if first.is_empty() || !first.chars().all(is_tchar) {
        return Err(HandshakeError::BadRequest("invalid Sec-WebSocket-Protocol"));
    }
    Ok(first.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "GET /chat?x=1 HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

    fn parse(s: &str) -> Result<Option<(UpgradeRequest, usize)>, HandshakeError> {
        parse_request(s.as_bytes(), &HandshakeLimits::default())
    }

    #[test]
    fn rfc6455_sample_accept_key() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn valid_request_parses_with_target_and_lowercased_headers() {
        let (req, used) = parse(GOOD).unwrap().unwrap();
        assert_eq!(used, GOOD.len());
        assert_eq!(req.target, "/chat?x=1");
        assert_eq!(req.path(), "/chat");
        assert_eq!(req.query(), "x=1");
        assert!(req
            .headers
            .iter()
            .any(|(k, v)| k == "host" && v == "server.example.com"));
        let resp = String::from_utf8(req.response()).unwrap();
        assert!(resp.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
        assert!(resp.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(resp.ends_with("\r\n\r\n"));
    }

    #[test]
    fn every_prefix_is_partial_and_trailing_bytes_are_not_consumed() {
        for i in 0..GOOD.len() {
            assert_eq!(parse(&GOOD[..i]), Ok(None), "prefix {i}");
        }
        let pipelined = format!("{GOOD}\u{81}\u{80}");
        let (_, used) = parse(&pipelined).unwrap().unwrap();
        assert_eq!(used, GOOD.len());
    }

    #[test]
    fn tokens_match_case_insensitively_in_comma_lists() {
        let req = GOOD
            .replace("Upgrade: websocket", "UPGRADE: h2c, WebSocket")
            .replace("Connection: Upgrade", "connection: keep-alive, upgrade");
        assert!(parse(&req).unwrap().is_some());
    }

    #[test]
    fn first_offered_subprotocol_is_echoed() {
        let req = GOOD.replace(
            "\r\n\r\n",
            "\r\nSec-WebSocket-Protocol: chat, superchat\r\n\r\n",
        );
        let (req, _) = parse(&req).unwrap().unwrap();
        assert_eq!(req.subprotocol.as_deref(), Some("chat"));
        assert!(String::from_utf8(req.response())
            .unwrap()
            .contains("Sec-WebSocket-Protocol: chat\r\n"));
    }

    #[test]
    fn errors_map_to_their_statuses() {
        let cases: Vec<(String, u16)> = vec![
            (GOOD.replace("GET", "POST"), 405),
            (GOOD.replace("Upgrade: websocket\r\n", ""), 426),
            ("GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_string(), 426),
            (GOOD.replace("Version: 13", "Version: 8"), 426),
            (GOOD.replace("Sec-WebSocket-Version: 13\r\n", ""), 426),
            (
                GOOD.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
                400,
            ),
            (GOOD.replace("dGhlIHNhbXBsZSBub25jZQ==", "short"), 400),
            (
                GOOD.replace("Connection: Upgrade", "Connection: close"),
                400,
            ),
            (GOOD.replace("HTTP/1.1", "HTTP/1.0"), 400),
            ("GARBAGE\r\n\r\n".to_string(), 400),
        ];
        for (req, status) in cases {
            let err = parse(&req).unwrap_err();
            assert_eq!(err.status(), status, "{req:?}");
            let resp = String::from_utf8(err.response()).unwrap();
            assert!(resp.starts_with(&format!("HTTP/1.1 {status} ")), "{resp}");
        }
    }

    #[test]
    fn version_error_names_the_supported_version() {
        let err = parse(&GOOD.replace("Version: 13", "Version: 8")).unwrap_err();
        assert!(String::from_utf8(err.response())
            .unwrap()
            .contains("Sec-WebSocket-Version: 13\r\n"));
    }

    #[test]
    fn one_empty_line_before_the_request_line_is_ignored_more_are_400() {
        for lead in ["\r\n", "\n", "\n\n"] {
            assert!(
                parse(&format!("{lead}{GOOD}")).unwrap().is_some(),
                "{lead:?}"
            );
        }
        for lead in ["\r\n\r\n", "\n\r\n", "\n\n\n", "\r\n\n"] {
            let err = parse(&format!("{lead}{GOOD}")).unwrap_err();
            assert_eq!(err.status(), 400, "{lead:?}");
        }
        // Decided on the first bytes, before the rest of the head is there.
        assert!(parse("\r\n\r").is_err());
        assert_eq!(parse("\r\n"), Ok(None));
    }

    /// The reader the reactor runs: a head fed a byte at a time is answered at its last
    /// byte with the same request as parsed whole, and three leading CR/LF bytes are
    /// refused as soon as they are there, though no blank line ends a head yet.
    #[test]
    fn read_head_answers_trickled_heads_and_leading_blank_runs_at_once() {
        let limits = HandshakeLimits::default();
        let whole = parse(GOOD).unwrap();
        let mut buf = Vec::new();
        for (i, b) in GOOD.bytes().enumerate() {
            let got = read_head(&mut buf, &[b], &limits);
            if i + 1 < GOOD.len() {
                assert_eq!(got, Ok(None), "byte {i}");
            } else {
                assert_eq!(got, Ok(whole.clone()));
            }
        }
        for lead in ["\r\n\r", "\n\n\n", "\r\r\r"] {
            let mut buf = Vec::new();
            let mut got = Ok(None);
            for b in lead.bytes() {
                got = read_head(&mut buf, &[b], &limits);
            }
            assert_eq!(got.unwrap_err().status(), 400, "{lead:?}");
        }
    }

    #[test]
    fn oversized_heads_are_431() {
        let many = GOOD.replace("\r\n\r\n", &"\r\nX-A: b".repeat(101)) + "\r\n\r\n";
        assert_eq!(parse(&many).unwrap_err().status(), 431);
        let big = format!("GET /{} HTTP/1.1\r\n", "a".repeat(17 * 1024));
        assert_eq!(parse(&big).unwrap_err().status(), 431);
    }

    /// Fuzz finding (fuzz/regressions/upgrade/malformed-past-the-limit): a head over the
    /// byte limit was 431 when the reactor parsed it as the limit was reached, but 400
    /// when one read brought the limit and a malformed byte past it. Only the bytes
    /// within the limit count now.
    #[test]
    fn bytes_past_the_limit_do_not_change_the_answer() {
        let limits = HandshakeLimits {
            max_bytes: 64,
            max_headers: 100,
        };
        let head = format!("GET /{} HTTP/1.1\r\n", "a".repeat(70));
        let at_limit = parse_request(&head.as_bytes()[..64], &limits).unwrap_err();
        let past_limit = parse_request(format!("{head}\x01\r\n\r\n").as_bytes(), &limits);
        assert_eq!(at_limit, HandshakeError::HeadersTooLarge);
        assert_eq!(past_limit.unwrap_err(), HandshakeError::HeadersTooLarge);
    }
}
