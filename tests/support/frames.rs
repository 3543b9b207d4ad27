//! Bytes on the wire: the upgrade request, HTTP heads, masked client frames and the
//! server's frames, over any stream (plain TCP or TLS).

use std::io::{ErrorKind, Read};
use std::time::Instant;

/// An upgrade request for `target` with the RFC 6455 sample key.
pub fn upgrade_request(target: &str) -> String {
    format!(
        "GET {target} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// [`upgrade_request`] for `/` with extra header lines (each ending in CRLF).
pub fn upgrade_request_with(target: &str, extra_headers: &str) -> String {
    upgrade_request(target).replace("\r\n\r\n", &format!("\r\n{extra_headers}\r\n"))
}

/// Read an HTTP response head (up to the blank line), byte by byte so no frame bytes
/// after it are taken.
pub fn read_http_head(s: &mut impl Read) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(0) => break,
            Ok(_) => head.push(b[0]),
            // A signal during a read with a timeout is EINTR even with SA_RESTART.
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            // A reset ends the head as EOF does: the caller sees what came before it.
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("reading the response head: {e}"),
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Read until the stream ends (EOF, a reset, or over TLS the end of the records with
/// or without close_notify). Fails the test if the deadline passes first.
pub fn read_to_eof(s: &mut impl Read) -> Vec<u8> {
    let start = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::ConnectionReset | ErrorKind::UnexpectedEof | ErrorKind::InvalidData
                ) =>
            {
                return out
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => panic!("no EOF within {:?}: {e}", start.elapsed()),
        }
    }
}

/// A masked client frame.
pub fn client_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    let key = [0xA1, 0xB2, 0xC3, 0xD4];
    let mut out = vec![b0];
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xFFFF {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

/// A server frame as read from the wire: (first byte, payload).
pub fn read_frame(s: &mut impl Read) -> (u8, Vec<u8>) {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).expect("frame header");
    assert_eq!(h[1] & 0x80, 0, "server frames are not masked");
    let len = match h[1] & 0x7F {
        126 => {
            let mut b = [0u8; 2];
            s.read_exact(&mut b).unwrap();
            u16::from_be_bytes(b) as usize
        }
        127 => {
            let mut b = [0u8; 8];
            s.read_exact(&mut b).unwrap();
            u64::from_be_bytes(b) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).unwrap();
    (h[0], payload)
}

/// Expect a close frame with `code` next, then the end of the stream.
pub fn expect_close(s: &mut impl Read, code: u16) {
    let (b0, payload) = read_frame(s);
    assert_eq!(
        b0, 0x88,
        "expected a close frame, got opcode byte {b0:#x} {payload:?}"
    );
    assert!(payload.len() >= 2, "close frame without a code");
    assert_eq!(
        u16::from_be_bytes([payload[0], payload[1]]),
        code,
        "close reason {:?}",
        String::from_utf8_lossy(&payload[2..])
    );
    read_to_eof(s);
}
