//! A connection's byte transport: a plain TCP socket, or TLS over one (rustls, driven
//! the way rustls' `tlsserver-mio` example drives it, inside the reactor):
//!
//! ```text
//!  socket ──read (64 KiB scratch)──read_tls──► rustls ──process_new_packets──► reader() ──► caller's buffer
//!  WriteQueue ──write / write_vectored──► writer() (only with room) ──write_tls──► socket
//! ```
//!
//! The plain path is the socket's own `read`/`write`/`writev`: the enum dispatch is its
//! only cost. Under TLS, plaintext is handed to rustls only when every TLS record it
//! made before has reached the socket, and rustls' buffer is bounded with
//! `set_buffer_limit`, so what rustls holds is small and counted (`held`): the
//! connection's queued bytes are the write queue's plus these.

use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;

use mio::net::TcpStream;
use rustls::ServerConnection;

/// Most plaintext rustls buffers before `writer()` takes no more. The writer is only
/// used once earlier records are on the wire, so this bounds what rustls holds.
pub const TLS_BUFFER_LIMIT: usize = 64 * 1024;

/// The socket, plain or TLS.
pub enum Transport {
    /// Bytes go straight to the socket.
    Plain(TcpStream),
    /// TLS records over the socket.
    Tls(Box<TlsStream>),
}

/// A TLS server connection and its socket.
pub struct TlsStream {
    sock: TcpStream,
    tls: ServerConnection,
    /// The socket reported EOF.
    eof: bool,
    /// TLS bytes made but not yet written to the socket (exact, from rustls' IoState).
    held: usize,
    /// Ciphertext read from the socket that rustls has not taken yet (the caller's
    /// buffer filled first); empty, with no allocation, almost always.
    pending: Vec<u8>,
    pending_pos: usize,
}

impl Transport {
    /// A TLS transport over an accepted socket.
    pub fn tls(sock: TcpStream, mut tls: ServerConnection) -> Transport {
        tls.set_buffer_limit(Some(TLS_BUFFER_LIMIT));
        Transport::Tls(Box::new(TlsStream {
            sock,
            tls,
            eof: false,
            held: 0,
            pending: Vec::new(),
            pending_pos: 0,
        }))
    }

    /// The socket, for poll registration.
    pub fn socket(&mut self) -> &mut TcpStream {
        match self {
            Transport::Plain(s) => s,
            Transport::Tls(t) => &mut t.sock,
        }
    }

    /// The peer's address (`getpeername`): asked when wanted rather than kept by
    /// every connection.
    pub fn peer_addr(&self) -> io::Result<std::net::SocketAddr> {
        match self {
            Transport::Plain(s) => s.peer_addr(),
            Transport::Tls(t) => t.sock.peer_addr(),
        }
    }

    /// Is this a TLS connection.
    pub fn is_tls(&self) -> bool {
        matches!(self, Transport::Tls(_))
    }

    /// Bytes the transport holds that are not on the wire yet (0 for plain TCP).
    #[inline]
    pub fn held(&self) -> usize {
        match self {
            Transport::Plain(_) => 0,
            Transport::Tls(t) => t.held,
        }
    }

    /// The transport has bytes to write of its own (TLS handshake messages, alerts,
    /// records not yet taken by the socket).
    #[inline]
    pub fn wants_write(&self) -> bool {
        match self {
            Transport::Plain(_) => false,
            Transport::Tls(t) => t.tls.wants_write(),
        }
    }

    /// A short read does not prove there is nothing more to read (TLS saw EOF, or
    /// holds ciphertext it read ahead).
    #[inline]
    pub fn may_have_more(&self) -> bool {
        match self {
            Transport::Plain(_) => false,
            Transport::Tls(t) => t.eof || !t.pending.is_empty(),
        }
    }

    /// Plaintext from the peer. `Ok(0)` is the end of the stream; `WouldBlock` means
    /// the socket is drained. Under TLS, a fatal TLS error queues an alert, writes it
    /// (best effort) and returns an error.
    #[inline]
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.read(buf),
            Transport::Tls(t) => t.read(buf),
        }
    }

    /// Write the bytes the transport holds (TLS only). `Ok(true)` when none are left.
    pub fn flush_own(&mut self) -> io::Result<bool> {
        match self {
            Transport::Plain(_) => Ok(true),
            Transport::Tls(t) => t.write_out(),
        }
    }

    /// Shut down the write side: under TLS, a close_notify first (best effort).
    pub fn shutdown_write(&mut self) {
        match self {
            Transport::Plain(s) => {
                let _ = s.shutdown(Shutdown::Write);
            }
            Transport::Tls(t) => {
                t.tls.send_close_notify();
                let _ = t.write_out();
                let _ = t.sock.shutdown(Shutdown::Write);
            }
        }
    }
}

impl Write for Transport {
    #[inline]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.write(buf),
            Transport::Tls(t) => t.write_plain(|w| w.write(buf)),
        }
    }

    #[inline]
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.write_vectored(bufs),
            Transport::Tls(t) => t.write_plain(|w| w.write_vectored(bufs)),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Socket reads for TLS go through this buffer, shared by the reactor thread's
/// connections: rustls' own `read_tls` reads at most 4 KiB per syscall.
const SCRATCH: usize = 64 * 1024;

thread_local! {
    static SCRATCH_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// What draining rustls' plaintext into the caller's buffer ended with.
enum Drained {
    /// rustls has no more plaintext for now.
    Empty,
    /// The caller's buffer is full.
    Full,
    /// The stream ended (close_notify, or EOF without one) or failed: return this.
    Done(io::Result<usize>),
}

impl TlsStream {
    fn drain(&mut self, buf: &mut [u8], filled: &mut usize) -> Drained {
        while *filled < buf.len() {
            match self.tls.reader().read(&mut buf[*filled..]) {
                // close_notify: the end of the stream.
                Ok(0) => return Drained::Done(Ok(*filled)),
                Ok(n) => *filled += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Drained::Empty,
                // EOF without close_notify: a truncation, the end all the same.
                Err(e) if *filled == 0 => return Drained::Done(Err(e)),
                Err(_) => return Drained::Done(Ok(*filled)),
            }
        }
        Drained::Full
    }

    /// Decrypt what `read_tls` took; on a fatal error send rustls' alert.
    fn process(&mut self) -> io::Result<()> {
        match self.tls.process_new_packets() {
            Ok(state) => {
                self.held = state.tls_bytes_to_write();
                Ok(())
            }
            Err(e) => {
                let _ = self.write_out();
                Err(io::Error::new(io::ErrorKind::InvalidData, e))
            }
        }
    }

    /// Give `src` to rustls record by record, moving plaintext into `buf`, until `src`
    /// is used up or `buf` is full. Returns the bytes of `src` used, or the read's result
    /// when the stream ended.
    fn feed(
        &mut self,
        src: &[u8],
        buf: &mut [u8],
        filled: &mut usize,
    ) -> Result<usize, io::Result<usize>> {
        let mut off = 0;
        while off < src.len() {
            let k = match self.tls.read_tls(&mut &src[off..]) {
                Ok(0) => return Err(Ok(*filled)), // after close_notify nothing is read
                Ok(k) => k,
                Err(e) => return Err(Err(e)),
            };
            off += k;
            if let Err(e) = self.process() {
                return Err(Err(e));
            }
            match self.drain(buf, filled) {
                Drained::Empty => {}
                Drained::Full => break,
                Drained::Done(r) => return Err(r),
            }
        }
        Ok(off)
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut filled = 0;
        loop {
            // Plaintext rustls already holds comes first; it may be more than one buffer.
            match self.drain(buf, &mut filled) {
                Drained::Empty => {}
                Drained::Full => return Ok(filled),
                Drained::Done(r) => return r,
            }
            // Then ciphertext read earlier that did not fit.
            if self.pending_pos < self.pending.len() {
                let pending = std::mem::take(&mut self.pending);
                let used = self.feed(&pending[self.pending_pos..], buf, &mut filled);
                self.pending = pending;
                match used {
                    Ok(n) => self.pending_pos += n,
                    Err(r) => return r,
                }
                if self.pending_pos == self.pending.len() {
                    self.pending = Vec::new();
                    self.pending_pos = 0;
                }
                continue;
            }
            if self.eof {
                return Ok(filled);
            }
            // Then the socket, up to 64 KiB per syscall.
            let short = SCRATCH_BUF.with_borrow_mut(|scratch| -> Result<bool, io::Result<usize>> {
                if scratch.len() < SCRATCH {
                    scratch.resize(SCRATCH, 0);
                }
                let n = loop {
                    match self.sock.read(scratch) {
                        Ok(n) => break n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock && filled > 0 => {
                            return Err(Ok(filled))
                        }
                        Err(e) => return Err(Err(e)),
                    }
                };
                if n == 0 {
                    self.eof = true;
                    // Tell rustls: a later reader() read reports a truncation unless
                    // close_notify came first.
                    let _ = self.tls.read_tls(&mut io::empty());
                    return Ok(false);
                }
                let used = self.feed(&scratch[..n], buf, &mut filled)?;
                if used < n {
                    self.pending.extend_from_slice(&scratch[used..n]);
                    self.pending_pos = 0;
                }
                Ok(n < scratch.len())
            });
            match short {
                // A short read emptied the socket's receive queue; with edge-triggered
                // polling, later bytes raise a new event.
                Ok(true) if self.pending.is_empty() => {
                    return if filled > 0 {
                        Ok(filled)
                    } else {
                        Err(io::ErrorKind::WouldBlock.into())
                    };
                }
                Ok(_) => {}
                Err(r) => return r,
            }
        }
    }

    /// Write pending TLS records until the socket would block.
    fn write_out(&mut self) -> io::Result<bool> {
        let mut result = Ok(());
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut self.sock) {
                Ok(0) => {
                    result = Err(io::ErrorKind::WriteZero.into());
                    break;
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        self.update_held();
        result.map(|()| !self.tls.wants_write())
    }

    fn update_held(&mut self) {
        self.held = match self.tls.process_new_packets() {
            Ok(state) => state.tls_bytes_to_write(),
            Err(_) => 0,
        };
    }

    /// Hand plaintext to rustls only when its earlier records are all on the wire,
    /// then write the new records. Plaintext taken counts as written; what is left of
    /// its records in rustls is `held`.
    fn write_plain(
        &mut self,
        give: impl FnOnce(&mut rustls::Writer<'_>) -> io::Result<usize>,
    ) -> io::Result<usize> {
        if !self.write_out()? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = give(&mut self.tls.writer())?;
        if n == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.write_out()?;
        Ok(n)
    }
}
