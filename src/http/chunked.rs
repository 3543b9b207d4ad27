//! `Transfer-Encoding: chunked` decoding (RFC 9112 section 7.1), sans-IO and strict.
//!
//! Every line must end in CRLF (a bare LF is refused: parsers that disagree on line ends
//! are how chunked smuggling works), the size is hex digits only, chunk extensions are
//! ignored, trailer fields are skipped, and the decoded size is checked against the body
//! limit before any of a chunk's data is stored.

use super::HttpError;

/// Longest chunk-size line, extensions included.
const MAX_LINE: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a chunk-size line.
    Size,
    /// Inside a chunk's data, with this many bytes left.
    Data(usize),
    /// After a chunk's data: expecting CR, then LF.
    DataCr,
    DataLf,
    /// After the last chunk: reading trailer lines until an empty one.
    Trailer,
    Done,
}

/// Decodes one chunked body. Feed it bytes with [`ChunkedDecoder::decode`] until it says
/// it is done; it takes only the bytes that belong to the body.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    /// The current size or trailer line, without its CRLF.
    line: Vec<u8>,
    /// Whether the last byte of `line` input was a CR (kept apart from `line`).
    cr: bool,
    decoded: usize,
    max_body: usize,
    trailer_bytes: usize,
    max_trailer: usize,
}

impl ChunkedDecoder {
    /// A decoder for a body of at most `max_body` decoded bytes, with at most
    /// `max_trailer` bytes of trailer fields.
    pub fn new(max_body: usize, max_trailer: usize) -> ChunkedDecoder {
        ChunkedDecoder {
            state: State::Size,
            line: Vec::new(),
            cr: false,
            decoded: 0,
            max_body,
            trailer_bytes: 0,
            max_trailer,
        }
    }

    /// Whether the terminating chunk and the trailer section have been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decode from `input`, appending data to `out`. Returns how many bytes of `input`
    /// belong to the body; when that is less than `input.len()`, the body is complete
    /// and the rest belongs to whatever follows it. Errors: 400 for broken framing, 413
    /// when the decoded size passes the limit, 431 for oversized trailers.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, HttpError> {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                State::Done => break,
                State::Data(left) => {
                    let take = left.min(input.len() - i);
                    out.extend_from_slice(&input[i..i + take]);
                    i += take;
                    self.state = if take == left {
                        State::DataCr
                    } else {
                        State::Data(left - take)
                    };
                }
                State::DataCr | State::DataLf => {
                    let want = if self.state == State::DataCr {
                        b'\r'
                    } else {
                        b'\n'
                    };
                    if input[i] != want {
                        return Err(HttpError::new(400, "chunk data not followed by CRLF"));
                    }
                    i += 1;
                    self.state = if want == b'\r' {
                        State::DataLf
                    } else {
                        State::Size
                    };
                }
                State::Size | State::Trailer => {
                    let b = input[i];
                    i += 1;
                    if self.cr {
                        if b != b'\n' {
                            return Err(HttpError::new(400, "CR without LF in chunked framing"));
                        }
                        self.cr = false;
                        self.end_line()?;
                        continue;
                    }
                    match b {
                        b'\r' => self.cr = true,
                        b'\n' => return Err(HttpError::new(400, "bare LF in chunked framing")),
                        _ => {
                            if self.state == State::Trailer {
                                self.trailer_bytes += 1;
                                if self.trailer_bytes > self.max_trailer {
                                    return Err(HttpError::new(431, "trailer fields too large"));
                                }
                            } else if self.line.len() >= MAX_LINE {
                                return Err(HttpError::new(400, "chunk-size line too long"));
                            }
                            self.line.push(b);
                        }
                    }
                }
            }
        }
        Ok(i)
    }

    /// A size or trailer line has ended (its CRLF consumed).
    fn end_line(&mut self) -> Result<(), HttpError> {
        if self.state == State::Trailer {
            // Trailer fields are read and dropped; an empty line ends the body.
            self.state = if self.line.is_empty() {
                State::Done
            } else {
                State::Trailer
            };
            self.line.clear();
            return Ok(());
        }
        let size = parse_size(&self.line)?;
        self.line.clear();
        if size == 0 {
            self.state = State::Trailer;
            return Ok(());
        }
        // Check before storing anything of this chunk.
        match self.decoded.checked_add(size) {
            Some(total) if total <= self.max_body => self.decoded = total,
            _ => return Err(HttpError::new(413, "chunked body over the size limit")),
        }
        self.state = State::Data(size);
        Ok(())
    }
}

/// `chunk-size [ BWS ; chunk-ext ]`: hex digits, then optionally whitespace and `;...`.
fn parse_size(line: &[u8]) -> Result<usize, HttpError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(HttpError::new(400, "chunk size is not hex"));
    }
    let rest = &line[digits..];
    let ext = rest.iter().position(|&b| b != b' ' && b != b'\t');
    if let Some(p) = ext {
        if rest[p] != b';' {
            return Err(HttpError::new(400, "junk after the chunk size"));
        }
    }
    let mut size: usize = 0;
    for &d in &line[..digits] {
        let v = (d as char).to_digit(16).unwrap_or(0) as usize;
        size = match size.checked_mul(16).and_then(|s| s.checked_add(v)) {
            Some(s) => s,
            // A size that does not fit in usize is over any body limit.
            None => return Err(HttpError::new(413, "chunked body over the size limit")),
        };
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8], max: usize) -> Result<(Vec<u8>, usize, bool), HttpError> {
        let mut d = ChunkedDecoder::new(max, 1024);
        let mut out = Vec::new();
        let n = d.decode(input, &mut out)?;
        Ok((out, n, d.is_done()))
    }

    #[test]
    fn decodes_chunks_with_extensions_and_trailers() {
        let input = b"4;name=v\r\nWiki\r\n5 ; x\r\npedia\r\n0\r\nX-T: 1\r\nX-U: 2\r\n\r\nNEXT";
        let (out, n, done) = decode_all(input, 100).unwrap();
        assert_eq!(out, b"Wikipedia");
        assert!(done);
        assert_eq!(&input[n..], b"NEXT");
    }

    #[test]
    fn byte_by_byte_gives_the_same_result() {
        let input = b"a\r\n0123456789\r\n1\r\nX\r\n0\r\n\r\n";
        let mut d = ChunkedDecoder::new(100, 100);
        let mut out = Vec::new();
        for b in input.iter() {
            assert_eq!(d.decode(std::slice::from_ref(b), &mut out).unwrap(), 1);
        }
        assert!(d.is_done());
        assert_eq!(out, b"0123456789X");
        assert_eq!(d.decode(b"more", &mut out).unwrap(), 0);
    }

    #[test]
    fn strict_framing() {
        let cases: &[(&[u8], u16)] = &[
            (b"4\nWiki\r\n0\r\n\r\n", 400),
            (b"4\r\nWikiX\r\n", 400),
            (b"4\r\nWiki\n", 400),
            (b"\r\n", 400),
            (b"-4\r\n", 400),
            (b"0x4\r\n", 400),
            (b"4 4\r\n", 400),
            (b"4\rX", 400),
            (b"0\r\nX: 1\n", 400),
        ];
        for (input, status) in cases {
            let e = decode_all(input, 100).unwrap_err();
            assert_eq!(e.status, *status, "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn limit_applies_to_the_decoded_size_before_storing() {
        let e = decode_all(b"8\r\n12345678\r\n8\r\n", 10).unwrap_err();
        assert_eq!(e.status, 413);
        let e = decode_all(b"ffffffffffffffffffffffff\r\n", 10).unwrap_err();
        assert_eq!(e.status, 413);
        let (out, _, done) = decode_all(b"5\r\n12345\r\n5\r\n67890\r\n0\r\n\r\n", 10).unwrap();
        assert_eq!(out.len(), 10);
        assert!(done);
    }

    #[test]
    fn long_size_line_and_big_trailers_are_refused() {
        let mut line = b"1;".to_vec();
        line.extend(std::iter::repeat_n(b'x', MAX_LINE));
        assert_eq!(decode_all(&line, 10).unwrap_err().status, 400);
        let mut t = b"0\r\n".to_vec();
        t.extend(std::iter::repeat_n(b'x', 2000));
        assert_eq!(decode_all(&t, 10).unwrap_err().status, 431);
    }
}
