//! The postback client: the seed's `wsPostbackFunction` (semantics 6.8) and the
//! `configurapi-runner-ws post` subcommand built on it.
//!
//! [`postback`] POSTs `{"statusCode","headers","body"}` as JSON to a management URL
//! (normally an event's `postback-url` header) and succeeds on a 2xx answer; a 410 means
//! the connection has gone. It is a blocking, one-request client on `std::net::TcpStream`
//! and `httparse`, sharing the server's chunked decoder: one short POST to a loopback or
//! in-cluster URL does not justify an HTTP client crate. `https://` uses rustls and
//! trusts only [`PostbackOptions::cacert`] (`post --cacert`).

use std::ffi::OsString;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use serde_json::{Map, Value};

use crate::http::ChunkedDecoder;

/// What a postback sends: the response envelope of semantics 6.3.
pub type PostbackMessage = crate::envelope::Envelope;

/// Timeouts, limits and credentials of one postback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostbackOptions {
    /// The management token, sent as `Authorization: Bearer <token>` when set (a
    /// server started with `--management-token` answers 401 without it).
    pub token: Option<String>,
    /// Time allowed to connect (per resolved address).
    pub connect_timeout: Duration,
    /// Time allowed for each read and each write.
    pub io_timeout: Duration,
    /// Most bytes of an error answer's body kept for [`PostbackError::Status`].
    pub max_error_body: usize,
    /// The PEM file of CA certificates an `https://` URL's server must chain to (the
    /// `post` subcommand's `--cacert`); without it `https://` is refused.
    pub cacert: Option<std::path::PathBuf>,
}

impl Default for PostbackOptions {
    fn default() -> Self {
        PostbackOptions {
            token: None,
            connect_timeout: Duration::from_secs(5),
            io_timeout: Duration::from_secs(5),
            max_error_body: 64 * 1024,
            cacert: None,
        }
    }
}

/// Why a postback failed.
#[derive(Debug)]
pub enum PostbackError {
    /// 410: the connection is not connected (closed, or never was).
    Gone,
    /// Another non-2xx answer: the status and the answer's body (lossy UTF-8, truncated
    /// to [`PostbackOptions::max_error_body`]).
    Status(u16, String),
    /// Connecting, writing or reading failed, or timed out.
    Io(io::Error),
    /// The URL cannot be parsed, or has parts the client does not send (user info).
    InvalidUrl(String),
    /// A scheme other than `http` and `https`.
    UnsupportedScheme(String),
    /// `https://` without a CA file to trust, a CA file that does not load, or a failed
    /// TLS handshake (an untrusted certificate, a name that does not match).
    Tls(String),
    /// The server's answer is not valid HTTP/1.x.
    BadResponse(String),
}

impl PostbackError {
    /// The HTTP status the server answered, when it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            PostbackError::Gone => Some(410),
            PostbackError::Status(s, _) => Some(*s),
            _ => None,
        }
    }
}

impl fmt::Display for PostbackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PostbackError::Gone => write!(f, "410 Gone: the connection is not connected"),
            PostbackError::Status(s, body) if body.is_empty() => {
                write!(f, "the server answered {s}")
            }
            PostbackError::Status(s, body) => write!(f, "the server answered {s}: {body}"),
            PostbackError::Io(e) => write!(f, "I/O error: {e}"),
            PostbackError::InvalidUrl(why) => write!(f, "invalid URL: {why}"),
            PostbackError::UnsupportedScheme(s) => {
                write!(f, "unsupported URL scheme '{s}' (http:// or https://)")
            }
            PostbackError::Tls(why) => write!(f, "TLS: {why}"),
            PostbackError::BadResponse(why) => write!(f, "bad HTTP answer: {why}"),
        }
    }
}

impl std::error::Error for PostbackError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PostbackError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for PostbackError {
    fn from(e: io::Error) -> Self {
        PostbackError::Io(e)
    }
}

/// Send `message` to `url` with the default options (5 s timeouts), the management
/// token of [`token`], so handlers' postbacks pass the check, and the CA of
/// [`set_cacert`], so they reach an `https://` postback-url (`--management-tls`).
pub fn postback(url: &str, message: &PostbackMessage) -> Result<(), PostbackError> {
    let opts = PostbackOptions {
        token: token(),
        cacert: cacert(),
        ..PostbackOptions::default()
    };
    postback_with(url, message, &opts)
}

/// The token given to [`set_token`] (the CLI passes `--management-token`), kept here
/// rather than written into the environment: `std::env::set_var` races with threads
/// reading the environment.
static TOKEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The CA file [`postback`] trusts for `https://` URLs (see [`set_cacert`]).
static CACERT: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

/// Sets the PEM file of certificates [`postback`] trusts for `https://` URLs; the
/// first call wins. With `--management-tls` the CLI sets it to `--cert`: the
/// postback-urls it hands out point at its own management API, which serves that
/// chain (a self-signed certificate is its own anchor; a CA-issued one verifies
/// through the intermediates in the file).
pub fn set_cacert(path: std::path::PathBuf) {
    let _ = CACERT.set(path);
}

/// The file given to [`set_cacert`], if any.
pub fn cacert() -> Option<std::path::PathBuf> {
    CACERT.get().cloned()
}

/// Sets the management token [`postback`] sends; the first call wins. Call it before
/// handlers run.
pub fn set_token(token: String) {
    let _ = TOKEN.set(token);
}

/// The token [`postback`] sends: the one given to [`set_token`], else
/// `CONFIGURAPI_MANAGEMENT_TOKEN` when set and not empty.
pub fn token() -> Option<String> {
    TOKEN.get().cloned().or_else(|| {
        std::env::var(crate::mgmt::TOKEN_ENV)
            .ok()
            .filter(|t| !t.is_empty())
    })
}

/// Send `message` to `url`: `Ok` on a 2xx answer, [`PostbackError::Gone`] on 410.
pub fn postback_with(
    url: &str,
    message: &PostbackMessage,
    opts: &PostbackOptions,
) -> Result<(), PostbackError> {
    let url = HttpUrl::parse(url)?;
    let body = message.to_json();
    match request(&url, "POST", Some(&body), opts)? {
        (200..=299, _) => Ok(()),
        (410, _) => Err(PostbackError::Gone),
        (s, body) => Err(PostbackError::Status(s, body)),
    }
}

/// `GET url` with these options (the `healthcheck` subcommand): the status, and the
/// body of a non-2xx answer.
pub(crate) fn get(url: &str, opts: &PostbackOptions) -> Result<(u16, String), PostbackError> {
    request(&HttpUrl::parse(url)?, "GET", None, opts)
}

/// One request on a fresh connection (`Connection: close`): `body` is sent as JSON.
fn request(
    url: &HttpUrl,
    method: &str,
    body: Option<&[u8]>,
    opts: &PostbackOptions,
) -> Result<(u16, String), PostbackError> {
    // Checked before connecting, so a missing CA is a usage error, not a network one.
    let tls = match (url.tls, &opts.cacert) {
        (false, _) => None,
        (true, None) => {
            return Err(PostbackError::Tls(
                "https:// needs a CA certificate to trust (--cacert PEM)".into(),
            ))
        }
        (true, Some(ca)) => Some(crate::tls::client_config(ca).map_err(PostbackError::Tls)?),
    };
    let tcp = connect(url, opts)?;
    tcp.set_read_timeout(Some(opts.io_timeout))?;
    tcp.set_write_timeout(Some(opts.io_timeout))?;
    let _ = tcp.set_nodelay(true);
    let mut stream: Box<dyn ReadWrite> = match tls {
        None => Box::new(tcp),
        Some(config) => {
            let host = url.host.trim_start_matches('[').trim_end_matches(']');
            let name = rustls::pki_types::ServerName::try_from(host.to_string())
                .map_err(|e| PostbackError::Tls(format!("'{host}' is not a server name: {e}")))?;
            let conn = rustls::ClientConnection::new(config, name)
                .map_err(|e| PostbackError::Tls(e.to_string()))?;
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            // Handshake now, so a certificate problem is named as one.
            while tls.conn.is_handshaking() {
                tls.conn.complete_io(&mut tls.sock).map_err(|e| {
                    match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                        Some(t) => PostbackError::Tls(t.to_string()),
                        None => PostbackError::Io(e),
                    }
                })?;
            }
            Box::new(tls)
        }
    };
    let auth = match &opts.token {
        Some(t) => format!("Authorization: Bearer {t}\r\n"),
        None => String::new(),
    };
    let content = match body {
        Some(b) => format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ),
        None => String::new(),
    };
    let mut req = format!(
        "{method} {} HTTP/1.1\r\nHost: {}\r\n{content}Connection: close\r\nUser-Agent: configurapi-runner-ws/{}\r\n{auth}\r\n",
        url.target,
        url.host_header(),
        env!("CARGO_PKG_VERSION"),
    )
    .into_bytes();
    req.extend_from_slice(body.unwrap_or_default());
    stream.write_all(&req)?;
    read_response(&mut stream, opts.max_error_body)
}

/// A plain or TLS stream to the management server.
trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

fn connect(url: &HttpUrl, opts: &PostbackOptions) -> Result<TcpStream, PostbackError> {
    let host = url.host.trim_start_matches('[').trim_end_matches(']');
    let mut last = None;
    for addr in (host, url.port).to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, opts.connect_timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(PostbackError::Io(last.unwrap_or_else(|| {
        io::Error::new(io::ErrorKind::NotFound, format!("{host} has no address"))
    })))
}

/// Read the answer's status and, for a non-2xx answer, its body (up to `max_body`
/// bytes). Interim 1xx answers are skipped.
fn read_response(
    stream: &mut dyn ReadWrite,
    max_body: usize,
) -> Result<(u16, String), PostbackError> {
    const MAX_HEAD: usize = 16 * 1024;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut res = httparse::Response::new(&mut headers);
        let used = match res.parse(&buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => {
                if buf.len() > MAX_HEAD {
                    return Err(PostbackError::BadResponse("head over 16 KiB".into()));
                }
                let n = stream.read(&mut chunk)?;
                if n == 0 {
                    return Err(PostbackError::BadResponse(
                        "connection closed before a complete answer".into(),
                    ));
                }
                buf.extend_from_slice(&chunk[..n]);
                continue;
            }
            Err(e) => return Err(PostbackError::BadResponse(e.to_string())),
        };
        let status = res.code.unwrap_or(0);
        if status == 101 {
            return Err(PostbackError::BadResponse("unexpected 101".into()));
        }
        if (100..200).contains(&status) {
            buf.drain(..used);
            continue;
        }
        if (200..300).contains(&status) || status == 410 {
            return Ok((status, String::new()));
        }
        let mut length = None;
        let mut chunked = false;
        for h in res.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                length = std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.trim().parse::<usize>().ok());
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = String::from_utf8_lossy(h.value)
                    .to_ascii_lowercase()
                    .contains("chunked");
            }
        }
        let rest = buf.split_off(used);
        // The body only words the error, so a broken or slow one is not an error itself.
        let body = read_body(stream, rest, chunked, length, max_body, &mut chunk);
        return Ok((status, String::from_utf8_lossy(&body).into_owned()));
    }
}

/// Best-effort read of an error answer's body: chunked, `Content-Length`, or to EOF.
fn read_body(
    stream: &mut dyn ReadWrite,
    mut pending: Vec<u8>,
    chunked: bool,
    length: Option<usize>,
    max: usize,
    chunk: &mut [u8],
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut dec = chunked.then(|| ChunkedDecoder::new(max, 16 * 1024));
    loop {
        if let Some(d) = dec.as_mut() {
            if d.decode(&pending, &mut out).is_err() || d.is_done() {
                break;
            }
        } else {
            out.extend_from_slice(&pending);
            if length.is_some_and(|l| out.len() >= l) {
                break;
            }
        }
        if out.len() >= max {
            break;
        }
        match stream.read(chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => pending = chunk[..n].to_vec(),
        }
    }
    out.truncate(max.min(length.unwrap_or(usize::MAX)));
    out
}

/// The parts of an `http://` URL the client uses.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HttpUrl {
    /// The host as written (IPv6 with brackets).
    host: String,
    port: u16,
    /// Path and query, `/` when the URL has none; the fragment is dropped.
    target: String,
    explicit_port: bool,
    /// `https://`.
    tls: bool,
}

impl HttpUrl {
    fn parse(url: &str) -> Result<HttpUrl, PostbackError> {
        let bad = |why: &str| PostbackError::InvalidUrl(format!("{why}: {url}"));
        if url.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(bad("spaces or control characters"));
        }
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("no scheme"))?;
        let tls = if scheme.eq_ignore_ascii_case("https") {
            true
        } else if scheme.eq_ignore_ascii_case("http") {
            false
        } else {
            return Err(PostbackError::UnsupportedScheme(scheme.to_string()));
        };
        let rest = rest.split('#').next().unwrap_or("");
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(end);
        if authority.contains('@') {
            return Err(bad("user info is not supported"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let close = v6.find(']').ok_or_else(|| bad("unclosed '['"))?;
            let after = &v6[close + 1..];
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(|| bad("junk after ']'"))?),
            };
            (&authority[..close + 2], port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() || host == "[]" {
            return Err(bad("no host"));
        }
        let explicit_port = port.is_some();
        let port = match port {
            None if tls => 443,
            None => 80,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| bad("bad port"))?,
        };
        let target = if target.starts_with('/') {
            target.to_string()
        } else {
            format!("/{target}")
        };
        Ok(HttpUrl {
            host: host.to_string(),
            port,
            target,
            explicit_port,
            tls,
        })
    }

    fn host_header(&self) -> String {
        if self.explicit_port {
            format!("{}:{}", self.host, self.port)
        } else {
            self.host.clone()
        }
    }
}

/// Usage of the `post` subcommand.
pub const POST_USAGE: &str = "\
configurapi-runner-ws post: send a message to a WebSocket connection through the management API

USAGE:
    configurapi-runner-ws post URL [--status N] [--header K:V]... [--timeout SECS] [--token TOKEN] BODY

ARGS:
    URL              the connection's postback-url, e.g. http://127.0.0.1:9100/@connections/<id>
    BODY             JSON if it parses as JSON, else sent as a string; - reads standard input

OPTIONS:
    --status N       the envelope's statusCode [default: 200]
    --header K:V     an envelope header; repeat for more (e.g. --header message-id:m-1)
    --timeout SECS   connect and read timeout [default: 5]
    --token TOKEN    the management token [default: $CONFIGURAPI_MANAGEMENT_TOKEN]
    --cacert PATH    PEM CA certificate(s) an https:// URL's server must chain to
                     (needed for https://, e.g. a runner with --management-tls)
    -h, --help       print this help

EXIT STATUS: 0 delivered (2xx); 1 not delivered (410, other answers, network errors); 2 usage error.
";

/// A failed `post` subcommand: the message to print and the process exit status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostCommandError {
    /// 1 when the message was not delivered, 2 for a usage error.
    pub exit_code: u8,
    /// What went wrong, one line.
    pub message: String,
}

impl fmt::Display for PostCommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PostCommandError {}

fn usage(message: String) -> PostCommandError {
    PostCommandError {
        exit_code: 2,
        message,
    }
}

/// Run `configurapi-runner-ws post` with the arguments after `post`. `--help` prints
/// [`POST_USAGE`] and succeeds.
pub fn run_post_command(args: Vec<OsString>) -> Result<(), PostCommandError> {
    let Some(cmd) = parse_post_args(args)? else {
        print!("{POST_USAGE}");
        return Ok(());
    };
    run_post(&cmd)
}

/// Send what a parsed `post` command line asks for.
pub fn run_post(cmd: &PostArgs) -> Result<(), PostCommandError> {
    let body = if cmd.body == "-" {
        let mut s = String::new();
        io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| usage(format!("cannot read the body from standard input: {e}")))?;
        s
    } else {
        cmd.body.clone()
    };
    let message = PostbackMessage::new(cmd.status, cmd.headers.clone(), body_value(&body));
    postback_with(&cmd.url, &message, &cmd.options).map_err(|e| PostCommandError {
        exit_code: match e {
            PostbackError::InvalidUrl(_) | PostbackError::UnsupportedScheme(_) => 2,
            PostbackError::Tls(_) if cmd.options.cacert.is_none() => 2,
            _ => 1,
        },
        message: e.to_string(),
    })
}

/// JSON when the text parses as JSON, else the text as a JSON string.
fn body_value(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

/// A parsed `post` command line ([`parse_post_args`]).
#[derive(Debug, Clone, PartialEq)]
pub struct PostArgs {
    url: String,
    status: u16,
    headers: Map<String, Value>,
    body: String,
    options: PostbackOptions,
}

/// Parse the arguments after `post`: `Ok(None)` for `--help`.
pub fn parse_post_args(args: Vec<OsString>) -> Result<Option<PostArgs>, PostCommandError> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_args(args);
    let mut positional = Vec::new();
    let mut status = 200;
    let mut headers = Map::new();
    let mut options = PostbackOptions {
        token: token(),
        ..PostbackOptions::default()
    };
    while let Some(arg) = p.next().map_err(|e| usage(e.to_string()))? {
        match arg {
            Short('h') | Long("help") => return Ok(None),
            Long("status") => {
                let v = string(p.value())?;
                status = v
                    .parse::<u16>()
                    .ok()
                    .filter(|s| (100..=599).contains(s))
                    .ok_or_else(|| {
                        usage(format!("--status needs a code from 100 to 599, not '{v}'"))
                    })?;
            }
            Long("header") => {
                let v = string(p.value())?;
                let (k, val) = v
                    .split_once(':')
                    .filter(|(k, _)| !k.trim().is_empty())
                    .ok_or_else(|| usage(format!("--header needs K:V, not '{v}'")))?;
                headers.insert(
                    k.trim().to_string(),
                    serde_json::Value::String(val.trim().to_string()),
                );
            }
            Long("timeout") => {
                let v = string(p.value())?;
                let secs = v
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s > 0.0 && *s <= 86_400.0)
                    .ok_or_else(|| {
                        usage(format!("--timeout needs a number of seconds, not '{v}'"))
                    })?;
                options.connect_timeout = Duration::from_secs_f64(secs);
                options.io_timeout = options.connect_timeout;
            }
            Long("cacert") => {
                let path = std::path::PathBuf::from(p.value().map_err(|e| usage(e.to_string()))?);
                // A CA file that does not load is a usage error, found before sending.
                crate::tls::client_config(&path).map_err(|e| usage(format!("--cacert: {e}")))?;
                options.cacert = Some(path);
            }
            Long("token") => {
                let v = string(p.value())?;
                if v.is_empty() {
                    return Err(usage("--token: the token must not be empty".into()));
                }
                options.token = Some(v);
            }
            Value(v) => positional.push(
                v.into_string()
                    .map_err(|_| usage("arguments must be UTF-8".into()))?,
            ),
            other => return Err(usage(other.unexpected().to_string())),
        }
    }
    let [url, body]: [String; 2] = positional.try_into().map_err(|v: Vec<String>| {
        usage(format!(
            "expected URL and BODY, got {} argument(s); see --help",
            v.len()
        ))
    })?;
    Ok(Some(PostArgs {
        url,
        status,
        headers,
        body,
        options,
    }))
}

fn string(v: Result<OsString, lexopt::Error>) -> Result<String, PostCommandError> {
    v.map_err(|e| usage(e.to_string()))?
        .into_string()
        .map_err(|_| usage("arguments must be UTF-8".into()))
}

#[cfg(test)]
mod tests;
