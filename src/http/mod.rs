//! A small, strict HTTP/1.1 server side, sans-IO: the management API's request parser
//! and response writer. Nothing here touches a socket; it is tested from byte literals.
//!
//! - [`HttpParser`] is fed the bytes read from one connection and hands out complete
//!   [`HttpRequest`]s (pipelined requests one at a time, reporting the bytes used), or an
//!   [`HttpError`] that names the status to answer before closing.
//! - [`ChunkedDecoder`] decodes a `Transfer-Encoding: chunked` body; the parser and the
//!   postback client share it.
//! - [`write_response`] encodes an answer with `Content-Length` and, when the connection
//!   is to close, `Connection: close`.
//!
//! Framing rules (RFC 9112 section 6, and no request smuggling): a request with both
//! `Content-Length` and `Transfer-Encoding`, two different `Content-Length` values, a
//! `Content-Length` that is not a decimal number, or a transfer coding other than plain
//! `chunked` is refused and the connection closes, because after such a head the server
//! cannot know where the next request starts.

mod chunked;
mod request;

pub use chunked::ChunkedDecoder;
pub use request::{HttpParser, Parsed};

use std::fmt;

/// Limits on one request. Exceeding them is an [`HttpError`] with the matching status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes the head may take, request line and blank line included (431 above).
    pub max_head_bytes: usize,
    /// Most header lines (431 above).
    pub max_headers: usize,
    /// Largest body, after chunked decoding (413 above).
    pub max_body: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head_bytes: 16 * 1024,
            max_headers: 100,
            max_body: 1024 * 1024,
        }
    }
}

/// One complete request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// The method as sent (methods are case-sensitive), e.g. `GET`.
    pub method: String,
    /// The request target as sent, e.g. `/post_@connection?id=abc`.
    pub target: String,
    /// The path part of the target, not percent-decoded (so an encoded `/` cannot
    /// split a segment); an absolute-form target is reduced to its path.
    pub path: String,
    /// The query string parsed and percent-decoded (`+` is a space), in order; repeated
    /// keys stay repeated.
    pub query: Vec<(String, String)>,
    /// Header names lowercased, values as sent (invalid UTF-8 replaced), in order.
    pub headers: Vec<(String, String)>,
    /// The body; a chunked body is decoded.
    pub body: Vec<u8>,
    /// Whether the connection stays open after the answer (HTTP/1.1 unless
    /// `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`).
    pub keep_alive: bool,
}

impl HttpRequest {
    /// The first header with this lowercase name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first query parameter with this key.
    pub fn query_param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A request the server refuses. The parser is closed after an error: the server sends
/// [`HttpError::status`] and closes, since the framing of anything that follows is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpError {
    /// The status to answer: 400, 413, 417, 431, 501 or 505 (never 411: chunked bodies
    /// are decoded).
    pub status: u16,
    /// What was wrong, for the answer's body and the log.
    pub reason: &'static str,
    /// Whether to close after answering; true for every parser error today.
    pub close: bool,
}

impl HttpError {
    pub(crate) const fn new(status: u16, reason: &'static str) -> HttpError {
        HttpError {
            status,
            reason,
            close: true,
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status,
            reason_phrase(self.status),
            self.reason
        )
    }
}

impl std::error::Error for HttpError {}

/// The reason phrase for a status code (RFC 9110 section 15); `""` for codes not listed,
/// which is a valid status line.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        410 => "Gone",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// Whether a blank line that can end a request head (`\n\n` or `\n\r\n`) starts at or
/// after `from` in `head`: the test both incremental head readers (this parser and the
/// WebSocket upgrade) run before parsing, so a head trickled in byte by byte is not
/// re-parsed at every byte. Empty lines before the request line do not count: the parser
/// skips them (RFC 9112 2.2), so a parse there would decide nothing, and only when the
/// reads happened to put them in view, making the outcome depend on how the input was cut.
pub fn may_end_head(head: &[u8], from: usize) -> bool {
    let start = head
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(head.len());
    let tail = &head[from.max(start).min(head.len())..];
    tail.windows(2).any(|w| w == b"\n\n") || tail.windows(3).any(|w| w == b"\n\r\n")
}

/// The interim answer to `Expect: 100-continue` (see [`HttpParser::take_continue`]).
pub const CONTINUE_RESPONSE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Append a complete response to `out`.
///
/// `Content-Length` is written from `body` (never for 1xx and 204, which have no body),
/// and `Connection: close` when `keep_alive` is false. Caller headers named
/// `Content-Length`, `Transfer-Encoding` or `Connection` are skipped so the framing is
/// always the writer's, and CR/LF are dropped from names and values so a value cannot
/// inject a header.
pub fn write_response(
    out: &mut Vec<u8>,
    status: u16,
    headers: &[(&str, &str)],
    body: &[u8],
    keep_alive: bool,
) {
    write_head(out, status, headers, body.len(), keep_alive);
    if has_body(status) {
        out.extend_from_slice(body);
    }
}

/// Append only the head of a response whose body is `body_len` bytes: the answer to a
/// `HEAD` request, whose `Content-Length` describes the body a `GET` would get.
pub fn write_head(
    out: &mut Vec<u8>,
    status: u16,
    headers: &[(&str, &str)],
    body_len: usize,
    keep_alive: bool,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason_phrase(status).as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        if ["content-length", "transfer-encoding", "connection"]
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h))
        {
            continue;
        }
        push_clean(out, name);
        out.extend_from_slice(b": ");
        push_clean(out, value);
        out.extend_from_slice(b"\r\n");
    }
    if has_body(status) {
        out.extend_from_slice(b"Content-Length: ");
        out.extend_from_slice(body_len.to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// 1xx and 204 carry neither a body nor a `Content-Length` (RFC 9110 8.6).
fn has_body(status: u16) -> bool {
    !(100..200).contains(&status) && status != 204
}

fn push_clean(out: &mut Vec<u8>, s: &str) {
    out.extend(s.bytes().filter(|&b| b != b'\r' && b != b'\n'));
}

/// xorshift64*: deterministic, dependency-free randomness for the robustness tests.
#[cfg(test)]
pub(crate) mod test_rng {
    pub(crate) struct Rng(pub(crate) u64);

    impl Rng {
        pub(crate) fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        /// A number below `n` (0 when `n` is 0).
        pub(crate) fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(out: &[u8]) -> &str {
        std::str::from_utf8(out).unwrap()
    }

    #[test]
    fn response_has_length_and_keeps_alive() {
        let mut out = Vec::new();
        write_response(
            &mut out,
            200,
            &[("Content-Type", "application/json")],
            b"[]",
            true,
        );
        assert_eq!(
            text(&out),
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n[]"
        );
    }

    #[test]
    fn closing_response_says_so() {
        let mut out = Vec::new();
        write_response(&mut out, 413, &[], b"x", false);
        assert_eq!(
            text(&out),
            "HTTP/1.1 413 Content Too Large\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx"
        );
    }

    #[test]
    fn no_content_has_no_length_and_no_body() {
        let mut out = Vec::new();
        write_response(&mut out, 204, &[], b"ignored", true);
        assert_eq!(text(&out), "HTTP/1.1 204 No Content\r\n\r\n");
    }

    #[test]
    fn framing_headers_from_the_caller_are_ignored_and_crlf_is_dropped() {
        let mut out = Vec::new();
        write_response(
            &mut out,
            200,
            &[
                ("Content-Length", "99"),
                ("connection", "keep-alive"),
                ("Transfer-Encoding", "chunked"),
                ("X-A", "1\r\nSet-Cookie: evil"),
            ],
            b"ok",
            true,
        );
        assert_eq!(
            text(&out),
            "HTTP/1.1 200 OK\r\nX-A: 1Set-Cookie: evil\r\nContent-Length: 2\r\n\r\nok"
        );
    }

    #[test]
    fn head_answer_gives_the_length_without_the_body() {
        let mut out = Vec::new();
        write_head(&mut out, 200, &[], 42, true);
        assert_eq!(text(&out), "HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n");
    }

    #[test]
    fn a_head_may_end_only_at_a_blank_line_after_the_request_line_starts() {
        assert!(may_end_head(b"GET / HTTP/1.1\r\n\r\n", 0));
        assert!(may_end_head(b"GET / HTTP/1.1\n\n", 0));
        assert!(may_end_head(b"\r\nGET / HTTP/1.1\r\n\r\n", 15));
        assert!(!may_end_head(b"GET / HTTP/1.1\r\n\r\n", 18));
        assert!(!may_end_head(b"GET / HTTP/1.1\r\nHost: h\r\n", 0));
        // Empty lines before the request line are no end of anything.
        assert!(!may_end_head(b"\r\n\r\n", 0));
        assert!(!may_end_head(b"\n\n\r\n\nGET", 0));
        assert!(!may_end_head(b"", 5));
    }

    #[test]
    fn unknown_status_has_an_empty_reason() {
        let mut out = Vec::new();
        write_response(&mut out, 599, &[], b"", true);
        assert!(text(&out).starts_with("HTTP/1.1 599 \r\n"));
        assert_eq!(reason_phrase(410), "Gone");
        assert_eq!(reason_phrase(431), "Request Header Fields Too Large");
    }
}
