//! The incremental request parser.
//!
//! The parser takes every byte it is given up to the end of one request, as the WebSocket
//! decoder does, so the reactor can feed it slices of its shared read buffer: only a
//! partial head (at most `max_head_bytes`) and the body being received are kept here.

use super::{ChunkedDecoder, HttpError, HttpRequest, Limits};

/// What [`HttpParser::feed`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// A complete request; `consumed` bytes of the input were used, and the rest (a
    /// pipelined request) is to be fed again.
    Request {
        /// The request.
        request: HttpRequest,
        /// Bytes of this call's input the request used (bytes buffered by earlier calls
        /// are not counted); feed the rest again.
        consumed: usize,
    },
    /// Every byte was taken; more are needed.
    NeedMore,
}

#[derive(Debug)]
enum State {
    /// Collecting the head in `head`.
    Head,
    /// Reading a `Content-Length` body with `left` bytes to go.
    Fixed { req: Box<HttpRequest>, left: usize },
    /// Reading a chunked body.
    Chunked {
        req: Box<HttpRequest>,
        dec: ChunkedDecoder,
    },
    /// After `Connection: close` or an error: nothing more is parsed.
    Closed,
}

/// An incremental HTTP/1.1 request parser for one connection. See the module docs of
/// [`crate::http`] for the framing rules.
#[derive(Debug)]
pub struct HttpParser {
    limits: Limits,
    state: State,
    head: Vec<u8>,
    /// The pending head asked for `100-continue` and no answer has been due yet.
    expect_continue: bool,
    continue_due: bool,
}

impl HttpParser {
    /// A parser with these limits.
    pub fn new(limits: Limits) -> HttpParser {
        HttpParser {
            limits,
            state: State::Head,
            head: Vec::new(),
            expect_continue: false,
            continue_due: false,
        }
    }

    /// Whether the parser has started a request it has not finished (the connection is
    /// not idle: a keep-alive idle timeout should not apply, a request timeout should).
    pub fn in_progress(&self) -> bool {
        match self.state {
            State::Head => !self.head.is_empty(),
            State::Fixed { .. } | State::Chunked { .. } => true,
            State::Closed => false,
        }
    }

    /// Whether the parser has stopped: after a request without keep-alive, or an error.
    /// Input fed after that is discarded; the server closes after its answer. Only the
    /// fuzz target and the tests ask.
    #[cfg(any(test, feature = "fuzzing"))]
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// True once after a head with `Expect: 100-continue` whose body has not arrived
    /// yet: the server should send [`super::CONTINUE_RESPONSE`] so the client sends it.
    pub fn take_continue(&mut self) -> bool {
        std::mem::take(&mut self.continue_due)
    }

    /// Feed bytes. Returns a complete request and the bytes it used, or
    /// [`Parsed::NeedMore`] when every byte was taken. After an error the parser is
    /// closed: answer [`HttpError::status`] and close the connection.
    pub fn feed(&mut self, input: &[u8]) -> Result<Parsed, HttpError> {
        let r = self.feed_inner(input);
        if r.is_err() {
            self.state = State::Closed;
            self.head = Vec::new();
        }
        r
    }

    fn feed_inner(&mut self, input: &[u8]) -> Result<Parsed, HttpError> {
        let mut off = 0;
        if let State::Head = self.state {
            match self.read_head(input)? {
                None => return Ok(Parsed::NeedMore),
                Some(n) => off = n,
            }
        }
        let done = match &mut self.state {
            // `read_head` leaves `Head` only with a complete head, so only `Closed` gets
            // here: its input is discarded.
            State::Head | State::Closed => return Ok(Parsed::NeedMore),
            State::Fixed { req, left } => {
                let take = (*left).min(input.len() - off);
                req.body.extend_from_slice(&input[off..off + take]);
                off += take;
                *left -= take;
                *left == 0
            }
            State::Chunked { req, dec } => {
                off += dec.decode(&input[off..], &mut req.body)?;
                dec.is_done()
            }
        };
        if !done {
            if std::mem::take(&mut self.expect_continue) {
                self.continue_due = true;
            }
            return Ok(Parsed::NeedMore);
        }
        self.expect_continue = false;
        self.continue_due = false;
        let request = match std::mem::replace(&mut self.state, State::Closed) {
            State::Fixed { req, .. } | State::Chunked { req, .. } => *req,
            State::Head | State::Closed => return Ok(Parsed::NeedMore),
        };
        if request.keep_alive {
            self.state = State::Head;
        }
        Ok(Parsed::Request {
            request,
            consumed: off,
        })
    }

    /// Buffer head bytes. `Some(n)`: the head is complete, `n` bytes of `input` belonged
    /// to it, and `state` says how to read the body. `None`: all of `input` was taken.
    fn read_head(&mut self, input: &[u8]) -> Result<Option<usize>, HttpError> {
        let before = self.head.len();
        let room = self.limits.max_head_bytes.saturating_sub(before);
        let take = room.min(input.len());
        self.head.extend_from_slice(&input[..take]);
        // Parse only when a blank line can have arrived, so a head trickled in one byte
        // at a time costs one scan, not one httparse run per byte.
        if super::may_end_head(&self.head, before.saturating_sub(3)) {
            if let Some(used) = self.parse_head()? {
                self.head = Vec::new();
                return Ok(Some(used.saturating_sub(before)));
            }
        }
        if self.head.len() >= self.limits.max_head_bytes {
            return Err(HttpError::new(431, "request head too large"));
        }
        Ok(None)
    }

    /// Run httparse over the buffered head; on success set up the body state and return
    /// the head's length.
    fn parse_head(&mut self) -> Result<Option<usize>, HttpError> {
        let mut slots = vec![httparse::EMPTY_HEADER; self.limits.max_headers];
        let mut req = httparse::Request::new(&mut slots);
        let used = match req.parse(&self.head) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => {
                return Err(HttpError::new(431, "too many header fields"))
            }
            Err(httparse::Error::Version) if is_other_http_version(&self.head) => {
                return Err(HttpError::new(505, "only HTTP/1.x is supported"))
            }
            Err(_) => return Err(HttpError::new(400, "malformed request head")),
        };
        let method = req.method.unwrap_or_default().to_string();
        let target = req.path.unwrap_or_default().to_string();
        let http10 = req.version == Some(0);
        let mut headers = Vec::with_capacity(req.headers.len());
        let mut framing = Framing::default();
        let mut conn_close = false;
        let mut conn_keep_alive = false;
        let mut hosts = 0;
        let mut expect = None;
        for h in req.headers.iter() {
            let name = h.name.to_ascii_lowercase();
            let value = String::from_utf8_lossy(h.value).into_owned();
            match name.as_str() {
                "content-length" => framing.content_length(&value)?,
                "transfer-encoding" => framing.transfer_encoding(&value),
                "connection" => {
                    for t in value.split(',').map(str::trim) {
                        conn_close |= t.eq_ignore_ascii_case("close");
                        conn_keep_alive |= t.eq_ignore_ascii_case("keep-alive");
                    }
                }
                "host" => hosts += 1,
                "expect" => expect = Some(value.trim().to_ascii_lowercase()),
                _ => {}
            }
            headers.push((name, value));
        }
        if !http10 && hosts != 1 {
            return Err(HttpError::new(
                400,
                "HTTP/1.1 needs exactly one Host header",
            ));
        }
        let path = request_path(&method, &target)?;
        let query = target
            .split_once('?')
            .map(|(_, q)| configurapi::http::query_pairs(q).collect())
            .unwrap_or_default();
        let keep_alive = if http10 {
            conn_keep_alive && !conn_close
        } else {
            !conn_close
        };
        let body_state = framing.body_state(http10, &self.limits)?;
        match expect.as_deref() {
            None => {}
            Some("100-continue") => self.expect_continue = !http10,
            Some(_) => return Err(HttpError::new(417, "unsupported expectation")),
        }
        let req = Box::new(HttpRequest {
            method,
            target,
            path,
            query,
            headers,
            body: Vec::new(),
            keep_alive,
        });
        self.state = match body_state {
            Body::Fixed(left) => State::Fixed { req, left },
            Body::Chunked(dec) => State::Chunked { req, dec },
        };
        Ok(Some(used))
    }
}

/// How the body of a parsed head is to be read.
enum Body {
    Fixed(usize),
    Chunked(ChunkedDecoder),
}

/// Body framing gathered from the headers.
#[derive(Debug, Default)]
struct Framing {
    content_length: Option<u64>,
    /// Transfer codings, lowercased, in order over every `Transfer-Encoding` line.
    codings: Vec<String>,
    transfer_encoding: bool,
}

impl Framing {
    /// One `Content-Length` line. A list (`5, 5`) or repeated lines are accepted only when
    /// every value is the same number (RFC 9112 6.3 item 5).
    fn content_length(&mut self, value: &str) -> Result<(), HttpError> {
        for v in value.split(',').map(str::trim) {
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(HttpError::new(400, "invalid Content-Length"));
            }
            // All digits: a value too long for u64 is over any limit.
            let n = v.parse::<u64>().unwrap_or(u64::MAX);
            match self.content_length {
                Some(prev) if prev != n => {
                    return Err(HttpError::new(400, "conflicting Content-Length values"))
                }
                _ => self.content_length = Some(n),
            }
        }
        Ok(())
    }

    fn transfer_encoding(&mut self, value: &str) {
        self.transfer_encoding = true;
        self.codings.extend(
            value
                .split(',')
                .map(|c| c.trim().to_ascii_lowercase())
                .filter(|c| !c.is_empty()),
        );
    }

    fn body_state(&self, http10: bool, limits: &Limits) -> Result<Body, HttpError> {
        if self.transfer_encoding {
            if self.content_length.is_some() {
                return Err(HttpError::new(
                    400,
                    "both Content-Length and Transfer-Encoding",
                ));
            }
            if http10 {
                return Err(HttpError::new(
                    400,
                    "Transfer-Encoding in an HTTP/1.0 request",
                ));
            }
            return match self.codings.as_slice() {
                [only] if only == "chunked" => Ok(Body::Chunked(ChunkedDecoder::new(
                    limits.max_body,
                    limits.max_head_bytes,
                ))),
                // Without chunked last the body length is unknown (RFC 9112 6.3 item 4).
                [.., last] if last != "chunked" => Err(HttpError::new(
                    400,
                    "chunked is not the final transfer coding",
                )),
                [] => Err(HttpError::new(400, "empty Transfer-Encoding")),
                _ => Err(HttpError::new(501, "transfer coding not implemented")),
            };
        }
        match self.content_length {
            None | Some(0) => Ok(Body::Fixed(0)),
            Some(n) if n > limits.max_body as u64 => {
                Err(HttpError::new(413, "request body over the size limit"))
            }
            Some(n) => Ok(Body::Fixed(n as usize)),
        }
    }
}

/// The path of an origin-form (`/p?q`), absolute-form (`http://h/p?q`) or asterisk-form
/// (`*`, OPTIONS only) target.
fn request_path(method: &str, target: &str) -> Result<String, HttpError> {
    let no_query = target.split_once('?').map(|(p, _)| p).unwrap_or(target);
    if no_query.starts_with('/') {
        return Ok(no_query.to_string());
    }
    if target == "*" && method == "OPTIONS" {
        return Ok("*".to_string());
    }
    let lower = no_query.to_ascii_lowercase();
    for scheme in ["http://", "https://"] {
        if lower.starts_with(scheme) {
            let rest = &no_query[scheme.len()..];
            return Ok(rest
                .find('/')
                .map(|i| rest[i..].to_string())
                .unwrap_or_else(|| "/".to_string()));
        }
    }
    Err(HttpError::new(400, "invalid request target"))
}

/// Whether the request line ends in `HTTP/<digit>...` with a version httparse refused
/// (HTTP/2.0, HTTP/3): 505 rather than 400.
fn is_other_http_version(head: &[u8]) -> bool {
    let line_end = head
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(head.len());
    let line = &head[..line_end];
    match line.iter().rposition(|&b| b == b' ') {
        Some(sp) => {
            let v = &line[sp + 1..];
            v.len() > 5 && v.starts_with(b"HTTP/") && v[5].is_ascii_digit()
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::test_rng::Rng;

    /// Feed `input` whole and collect every request, or the first error.
    fn parse_all(input: &[u8], limits: Limits) -> Result<Vec<HttpRequest>, HttpError> {
        let mut p = HttpParser::new(limits);
        let mut out = Vec::new();
        let mut off = 0;
        loop {
            match p.feed(&input[off..])? {
                Parsed::Request { request, consumed } => {
                    off += consumed;
                    out.push(request);
                }
                Parsed::NeedMore => return Ok(out),
            }
        }
    }

    fn one(input: &[u8]) -> HttpRequest {
        let mut v = parse_all(input, Limits::default()).unwrap();
        assert_eq!(v.len(), 1, "{v:?}");
        v.remove(0)
    }

    fn err(input: &[u8]) -> HttpError {
        parse_all(input, Limits::default()).unwrap_err()
    }

    #[test]
    fn get_with_query_and_lowercased_headers() {
        let r =
            one(b"GET /post_@connection?id=a%20b&x=1+2 HTTP/1.1\r\nHost: h\r\nX-Thing: V\r\n\r\n");
        assert_eq!(r.method, "GET");
        assert_eq!(r.target, "/post_@connection?id=a%20b&x=1+2");
        assert_eq!(r.path, "/post_@connection");
        assert_eq!(r.query_param("id"), Some("a b"));
        assert_eq!(r.query_param("x"), Some("1 2"));
        assert_eq!(r.header("x-thing"), Some("V"));
        assert!(r.keep_alive);
        assert!(r.body.is_empty());
    }

    #[test]
    fn byte_at_a_time_gives_the_same_request() {
        let input = b"POST /@connections/x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello";
        let mut p = HttpParser::new(Limits::default());
        for (i, b) in input.iter().enumerate() {
            match p.feed(std::slice::from_ref(b)).unwrap() {
                Parsed::NeedMore => assert!(i + 1 < input.len()),
                Parsed::Request { request, consumed } => {
                    assert_eq!(i + 1, input.len());
                    assert_eq!(consumed, 1);
                    assert_eq!(request.body, b"hello");
                }
            }
        }
    }

    /// Fuzz finding (fuzz/regressions/mgmt_http/leading-blank-line-then-malformed): empty
    /// lines before the request line counted as the blank line ending a head, so a whole
    /// read parsed (and refused, 400) a malformed head that had not ended yet, while the
    /// same bytes read one at a time waited for the rest. Now both wait.
    #[test]
    fn leading_empty_lines_do_not_make_the_outcome_depend_on_the_reads() {
        let input = b"\r\n\r\nGET / HTTP/1.0\r\nHost: h\r\n\rX-A: \n";
        let mut whole = HttpParser::new(Limits::default());
        assert_eq!(whole.feed(input), Ok(Parsed::NeedMore));
        let mut split = HttpParser::new(Limits::default());
        for b in input {
            assert_eq!(split.feed(std::slice::from_ref(b)), Ok(Parsed::NeedMore));
        }
        // Leading empty lines are still skipped once a head does end.
        let r = one(b"\r\n\r\nGET /x HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(r.path, "/x");
    }

    #[test]
    fn pipelined_requests_report_what_they_used() {
        let input = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nPOST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhiGET /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\nGET /d HTTP/1.1\r\nHo";
        let mut p = HttpParser::new(Limits::default());
        let mut off = 0;
        let mut paths = Vec::new();
        while let Parsed::Request { request, consumed } = p.feed(&input[off..]).unwrap() {
            off += consumed;
            paths.push((request.path, request.body));
        }
        assert_eq!(
            paths,
            vec![
                ("/a".to_string(), vec![]),
                ("/b".to_string(), b"hi".to_vec()),
                ("/c".to_string(), b"ok".to_vec()),
            ]
        );
        assert!(p.in_progress());
        match p.feed(b"st: h\r\n\r\n").unwrap() {
            Parsed::Request { request, consumed } => {
                assert_eq!(request.path, "/d");
                assert_eq!(consumed, 9);
            }
            Parsed::NeedMore => panic!("head complete"),
        }
        assert!(!p.in_progress());
    }

    #[test]
    fn smuggling_shapes_are_400_and_close() {
        let cases: &[&[u8]] = &[
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3, 4\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +3\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x3\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length:\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\n\r\n",
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length : 3\r\n\r\nabc",
            b"POST / HTTP/1.1\r\nHost: h\r\n Content-Length: 3\r\n\r\nabc",
        ];
        for c in cases {
            let mut p = HttpParser::new(Limits::default());
            let e = p.feed(c).unwrap_err();
            assert_eq!(e.status, 400, "{}", String::from_utf8_lossy(c));
            assert!(e.close);
            assert!(p.is_closed());
            assert_eq!(
                p.feed(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"),
                Ok(Parsed::NeedMore)
            );
        }
    }

    #[test]
    fn repeated_equal_content_length_is_accepted() {
        let r = one(
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nContent-Length: 2, 2\r\n\r\nok",
        );
        assert_eq!(r.body, b"ok");
    }

    #[test]
    fn unknown_codings_are_501() {
        let e = err(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
        assert_eq!((e.status, e.close), (501, true));
        let e = err(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(e.status, 501);
    }

    #[test]
    fn chunked_body_is_decoded_and_trailers_skipped() {
        let r = one(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n3;e=1\r\n{\"a\r\n2\r\n\":\r\n2\r\n1}\r\n0\r\nX-Trailer: y\r\n\r\n");
        assert_eq!(r.body, b"{\"a\":1}");
        assert_eq!(r.header("x-trailer"), None);
    }

    #[test]
    fn body_limits_are_413() {
        let limits = Limits {
            max_body: 4,
            ..Limits::default()
        };
        let e = parse_all(
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n",
            limits,
        )
        .unwrap_err();
        assert_eq!((e.status, e.close), (413, true));
        let e = parse_all(
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999999999\r\n\r\n",
            limits,
        )
        .unwrap_err();
        assert_eq!(e.status, 413);
        let e = parse_all(
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde",
            limits,
        )
        .unwrap_err();
        assert_eq!(e.status, 413);
        let r = parse_all(
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nabcd",
            limits,
        )
        .unwrap();
        assert_eq!(r[0].body, b"abcd");
    }

    #[test]
    fn the_default_body_limit_is_one_mebibyte() {
        let head = format!(
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n",
            1024 * 1024 + 1
        );
        assert_eq!(err(head.as_bytes()).status, 413);
    }

    #[test]
    fn head_limits_are_431() {
        let mut many = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
        for i in 0..100 {
            many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(err(&many).status, 431);
        let mut big = b"GET / HTTP/1.1\r\nHost: h\r\nX: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', 16 * 1024));
        assert_eq!(err(&big).status, 431);
        // Also when the head arrives in small pieces and never ends.
        let mut p = HttpParser::new(Limits::default());
        let mut status = None;
        for _ in 0..10_000 {
            if let Err(e) = p.feed(b"aaaa") {
                status = Some(e.status);
                break;
            }
        }
        assert_eq!(status, Some(431));
    }

    #[test]
    fn malformed_heads_are_400_and_other_versions_505() {
        for c in [
            &b"GARBAGE\r\n\r\n"[..],
            b"GET /\r\n\r\n",
            b"GET / HTTP/1.1 extra\r\n\r\n",
            b"G(T / HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n folded\r\n\r\n",
            b"GET nopath HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            b"\x00\x01\x02\r\n\r\n",
        ] {
            assert_eq!(err(c).status, 400, "{}", String::from_utf8_lossy(c));
        }
        assert_eq!(err(b"GET / HTTP/2.0\r\nHost: h\r\n\r\n").status, 505);
        assert_eq!(err(b"GET / HTTP/3\r\nHost: h\r\n\r\n").status, 505);
    }

    #[test]
    fn keep_alive_rules() {
        let r = one(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: Close\r\n\r\n");
        assert!(!r.keep_alive);
        let r = one(b"GET / HTTP/1.0\r\n\r\n");
        assert!(!r.keep_alive);
        let r = one(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert!(r.keep_alive);
        // After a closing request, a pipelined one is not served.
        let v = parse_all(
            b"GET /a HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n",
            Limits::default(),
        )
        .unwrap();
        assert_eq!(v.len(), 1);
    }

    #[test]
    fn expect_continue_is_signalled_once_while_the_body_is_missing() {
        let mut p = HttpParser::new(Limits::default());
        let head =
            b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n";
        assert_eq!(p.feed(head).unwrap(), Parsed::NeedMore);
        assert!(p.take_continue());
        assert!(!p.take_continue());
        assert!(matches!(p.feed(b"ok").unwrap(), Parsed::Request { .. }));
        assert!(!p.take_continue());
        // With the body already there, no interim answer is needed.
        let mut p = HttpParser::new(Limits::default());
        let mut all = head.to_vec();
        all.extend_from_slice(b"ok");
        assert!(matches!(p.feed(&all).unwrap(), Parsed::Request { .. }));
        assert!(!p.take_continue());
        let e = err(b"POST / HTTP/1.1\r\nHost: h\r\nExpect: magic\r\n\r\n");
        assert_eq!(e.status, 417);
    }

    #[test]
    fn absolute_and_asterisk_targets() {
        let r = one(b"GET http://h:9100/@connections?x=1 HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(r.path, "/@connections");
        assert_eq!(r.query_param("x"), Some("1"));
        let r = one(b"GET http://h HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(r.path, "/");
        let r = one(b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(r.path, "*");
    }

    #[test]
    fn leading_blank_lines_are_ignored() {
        let r = one(b"\r\n\r\nGET /x HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(r.path, "/x");
    }

    const SEEDS: &[&[u8]] = &[
        b"GET /@connections HTTP/1.1\r\nHost: h\r\n\r\n",
        b"POST /@connections/abc HTTP/1.1\r\nHost: h\r\nContent-Length: 13\r\nContent-Type: application/json\r\n\r\n{\"body\":\"hi\"}",
        b"POST /post_@connection?id=abc HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n4;x\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\nT: 1\r\n\r\n",
        b"DELETE /@connections/abc HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nAuthorization: Bearer t\r\n\r\n",
    ];

    /// Random, truncated and mutated inputs, fed in random pieces: the parser must
    /// answer (a request, "need more" or an error) and never panic or hang; and valid
    /// inputs must parse the same however they are split.
    #[test]
    fn never_panics_and_splitting_does_not_change_the_result() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let limits = Limits {
            max_head_bytes: 512,
            max_headers: 8,
            max_body: 64,
        };
        let alphabet = b"GETPOSDL /@?=&%:;,-\r\n\t0123456789abcdefxHTP./";
        for round in 0..20_000 {
            let seed = SEEDS[rng.below(SEEDS.len())];
            let mut input: Vec<u8> = match round % 4 {
                0 => (0..rng.below(300))
                    .map(|_| alphabet[rng.below(alphabet.len())])
                    .collect(),
                1 => seed[..rng.below(seed.len() + 1)].to_vec(),
                2 => (0..rng.below(100)).map(|_| rng.next() as u8).collect(),
                _ => {
                    let mut v = seed.to_vec();
                    for _ in 0..=rng.below(4) {
                        let i = rng.below(v.len());
                        match rng.below(3) {
                            0 => v[i] = alphabet[rng.below(alphabet.len())],
                            1 => {
                                v.remove(i);
                            }
                            _ => v.insert(i, rng.next() as u8),
                        }
                    }
                    v
                }
            };
            if round % 7 == 0 {
                // Pipelining: append another seed.
                input.extend_from_slice(SEEDS[rng.below(SEEDS.len())]);
            }
            let whole = parse_all(&input, limits);
            // The same bytes in random pieces.
            let mut p = HttpParser::new(limits);
            let mut got = Vec::new();
            let mut pos = 0;
            let mut error = None;
            'outer: while pos < input.len() {
                let end = (pos + 1 + rng.below(40)).min(input.len());
                let mut off = pos;
                loop {
                    match p.feed(&input[off..end]) {
                        Ok(Parsed::Request { request, consumed }) => {
                            assert!(consumed <= end - off);
                            off += consumed;
                            got.push(request);
                        }
                        Ok(Parsed::NeedMore) => break,
                        Err(e) => {
                            error = Some(e);
                            break 'outer;
                        }
                    }
                }
                pos = end;
            }
            match (whole, error) {
                (Ok(v), None) => assert_eq!(v, got, "{:?}", String::from_utf8_lossy(&input)),
                (Err(a), Some(b)) => assert_eq!(a.status, b.status),
                (w, e) => panic!(
                    "split changed the outcome: {w:?} vs {e:?} for {:?}",
                    String::from_utf8_lossy(&input)
                ),
            }
        }
    }
}
