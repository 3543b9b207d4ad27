//! Clients: a socket with deadlines, plain TCP or TLS ([`Stream`]), and [`Ws`], a
//! WebSocket client over raw frames that talks JSON envelopes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use rustls::pki_types::ServerName;
use serde_json::Value;

use super::frames::{client_frame, read_frame, read_http_head, read_to_eof, upgrade_request_with};
use super::wait::DEADLINE;

/// Which listener a test talks to: the same test body runs over both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Plain,
    Tls,
}

/// A TLS client stream over std sockets.
pub type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A TCP connection to `addr` with read/write deadlines and no Nagle delay.
pub fn tcp(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.set_write_timeout(Some(DEADLINE)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// A TLS stream to `addr` (as `localhost`) trusting what `cfg` trusts, after the TLS
/// handshake; the handshake's error if it fails.
pub fn tls_connect(addr: SocketAddr, cfg: Arc<rustls::ClientConfig>) -> std::io::Result<Tls> {
    let conn =
        rustls::ClientConnection::new(cfg, ServerName::try_from("localhost").unwrap()).unwrap();
    let mut s = rustls::StreamOwned::new(conn, tcp(addr));
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock)?;
    }
    Ok(s)
}

/// A client connection over plain TCP or TLS.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<Tls>),
}

impl Stream {
    /// The TCP socket under it (to shut down, clone for a second thread, or reset).
    pub fn sock(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => &s.sock,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// Send an upgrade request for `target` with extra header lines (each ending in CRLF)
/// and expect `101`; returns the response head.
pub fn upgrade_on(s: &mut (impl Read + Write), target: &str, extra_headers: &str) -> String {
    s.write_all(upgrade_request_with(target, extra_headers).as_bytes())
        .unwrap();
    let head = read_http_head(s);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    head
}

/// A WebSocket client over raw frames (masked frames, exact reads), on plain TCP unless
/// it says otherwise.
pub struct Ws<S = TcpStream> {
    pub s: S,
}

impl<S: Read + Write> Ws<S> {
    /// Send a text frame.
    pub fn send_text(&mut self, text: &str) {
        self.s
            .write_all(&client_frame(0x81, text.as_bytes()))
            .unwrap();
    }

    /// Send a binary frame.
    pub fn send_binary(&mut self, bytes: &[u8]) {
        self.s.write_all(&client_frame(0x82, bytes)).unwrap();
    }

    /// Send a JSON message as a text frame.
    pub fn send(&mut self, msg: &Value) {
        self.send_text(&msg.to_string());
        // A TLS stream may hold the record until flushed.
        self.s.flush().unwrap();
    }

    /// The next frame, which must be a text frame holding JSON.
    pub fn recv(&mut self) -> Value {
        let (b0, payload) = read_frame(&mut self.s);
        assert_eq!(
            b0,
            0x81,
            "expected a text frame, got {b0:#x} {:?}",
            String::from_utf8_lossy(&payload)
        );
        serde_json::from_slice(&payload).unwrap_or_else(|e| {
            panic!(
                "frame is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&payload)
            )
        })
    }

    /// Send `msg` and read the next frame.
    pub fn request(&mut self, msg: &Value) -> Value {
        self.send(msg);
        self.recv()
    }

    /// Client-initiated close with 1000: the server answers with 1000 and closes TCP.
    pub fn close(mut self) {
        self.s
            .write_all(&client_frame(0x88, &1000u16.to_be_bytes()))
            .unwrap();
        let (b0, payload) = read_frame(&mut self.s);
        assert_eq!((b0, &payload[..]), (0x88, &1000u16.to_be_bytes()[..]));
        read_to_eof(&mut self.s);
    }

    /// Answer a server's close frame (already read) with 1000 and wait for EOF.
    pub fn answer_close(mut self) {
        // The server may already have closed its side; a failed write is fine.
        let _ = self
            .s
            .write_all(&client_frame(0x88, &1000u16.to_be_bytes()));
        read_to_eof(&mut self.s);
    }
}

impl Ws<TcpStream> {
    /// The next frame must be a close frame with `code` (and `reason` if given). The
    /// client answers it (RFC 6455 5.5.1), and then the server closes TCP.
    pub fn expect_close(&mut self, code: u16, reason: Option<&str>) {
        let (b0, payload) = read_frame(&mut self.s);
        assert_eq!(
            b0,
            0x88,
            "expected a close frame, got {b0:#x} {:?}",
            String::from_utf8_lossy(&payload)
        );
        assert!(payload.len() >= 2, "close frame without a code");
        assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), code);
        if let Some(reason) = reason {
            assert_eq!(String::from_utf8_lossy(&payload[2..]), reason);
        }
        // A server that is already finishing may have closed: a failed write is fine.
        let _ = self.s.write_all(&client_frame(0x88, &payload[..2]));
        read_to_eof(&mut self.s);
        // The server reads until our FIN: send it, the connection is over.
        let _ = self.s.shutdown(std::net::Shutdown::Both);
    }
}

/// A client of the WebSocket listener at `addr` that finished the upgrade on `/`.
pub fn ws_client(addr: SocketAddr) -> Ws {
    let mut s = tcp(addr);
    upgrade_on(&mut s, "/", "");
    Ws { s }
}

/// A tungstenite client of `ws://{addr}{target}` over plain TCP, with read and write
/// deadlines, that finished the handshake.
pub fn tungstenite_at(addr: SocketAddr, target: &str) -> tungstenite::WebSocket<TcpStream> {
    let url = format!("ws://{addr}{target}");
    let (ws, resp) = tungstenite::client(url, tcp(addr)).expect("ws handshake");
    assert_eq!(resp.status().as_u16(), 101);
    ws
}

/// The next text frame as JSON, past pings and pongs; any other frame fails the test.
pub fn recv_json(ws: &mut tungstenite::WebSocket<impl Read + Write>) -> Value {
    loop {
        match ws.read().expect("a frame before the deadline") {
            tungstenite::Message::Text(t) => {
                return serde_json::from_str(t.as_str())
                    .unwrap_or_else(|e| panic!("frame is not JSON ({e}): {t:?}"))
            }
            tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_) => {}
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// Send `text` as a text frame and read the next JSON frame.
pub fn ask_text(ws: &mut tungstenite::WebSocket<impl Read + Write>, text: &str) -> Value {
    ws.send(tungstenite::Message::text(text)).unwrap();
    recv_json(ws)
}
