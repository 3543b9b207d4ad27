//! `permessage-deflate` negotiation (RFC 7692 section 7.1), sans-IO: the client's
//! `Sec-WebSocket-Extensions` values in, the parameters in force and the answer out.
//!
//! An offer this server cannot take, or a malformed one (an unknown parameter, a bad
//! value, a parameter twice), is declined as RFC 7692 7.1 says ("a server MUST decline
//! an extension negotiation offer ... if"): the next offer is tried, and with none left
//! the connection upgrades without the extension. The handshake never fails for it.

/// How the server uses permessage-deflate (`--deflate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeflateMode {
    /// Decline every offer.
    Off,
    /// No context takeover in either direction: one compressor and one decompressor per
    /// thread, reset per message; an idle connection holds nothing for deflate.
    Shared,
    /// Context takeover where the client allows it: per-connection contexts, allocated
    /// at the first compressed message.
    Takeover,
}

impl DeflateMode {
    /// Parse `off`, `shared` or `takeover`.
    pub fn parse(s: &str) -> Option<DeflateMode> {
        match s {
            "off" => Some(DeflateMode::Off),
            "shared" => Some(DeflateMode::Shared),
            "takeover" => Some(DeflateMode::Takeover),
            _ => None,
        }
    }
}

/// The parameters in force on a connection that negotiated permessage-deflate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateParams {
    /// The server resets its compressor after every message.
    pub server_no_context_takeover: bool,
    /// The client resets its compressor after every message, so the server's
    /// decompressor may be reset (and shared) too.
    pub client_no_context_takeover: bool,
    /// The server's LZ77 window, 8..=15 (15 unless the client asked for less).
    pub server_max_window_bits: u8,
}

/// The first acceptable `permessage-deflate` offer among the header `values` (each a
/// `Sec-WebSocket-Extensions` header value, in order), with the answer's header value.
/// `None`: no offer, all declined, or `mode` is off.
pub fn negotiate<'a>(
    values: impl IntoIterator<Item = &'a str>,
    mode: DeflateMode,
) -> Option<(DeflateParams, String)> {
    if mode == DeflateMode::Off {
        return None;
    }
    for value in values {
        for element in split_outside_quotes(value, ',') {
            let mut parts = split_outside_quotes(element, ';').into_iter();
            let name = parts.next().unwrap_or("").trim();
            if !name.eq_ignore_ascii_case("permessage-deflate") {
                continue;
            }
            if let Some(accepted) = accept_offer(parts, mode) {
                return Some(accepted);
            }
        }
    }
    None
}

/// One offer's parameters; `None` declines it.
fn accept_offer<'a>(
    params: impl Iterator<Item = &'a str>,
    mode: DeflateMode,
) -> Option<(DeflateParams, String)> {
    let mut server_nct = false;
    let mut client_nct = false;
    let mut server_bits: Option<u8> = None;
    let mut client_bits_seen = false;
    for p in params {
        let (name, value) = match p.split_once('=') {
            Some((n, v)) => (n.trim(), Some(unquote(v.trim())?)),
            None => (p.trim(), None),
        };
        // Parameter names are case-insensitive tokens like extension names.
        let name = name.to_ascii_lowercase();
        let seen = match name.as_str() {
            "server_no_context_takeover" if value.is_none() => &mut server_nct,
            "client_no_context_takeover" if value.is_none() => &mut client_nct,
            "server_max_window_bits" => {
                if server_bits.is_some() {
                    return None;
                }
                server_bits = Some(window_bits(value?)?);
                continue;
            }
            "client_max_window_bits" => {
                if client_bits_seen {
                    return None;
                }
                client_bits_seen = true;
                if let Some(v) = value {
                    window_bits(v)?;
                }
                continue;
            }
            // Unknown, or a value on a parameter that takes none.
            _ => return None,
        };
        if *seen {
            return None;
        }
        *seen = true;
    }
    let shared = mode == DeflateMode::Shared;
    let params = DeflateParams {
        // In shared mode the server adds both (7.1.1.1 and 7.1.1.2 allow it unasked).
        server_no_context_takeover: server_nct || shared,
        client_no_context_takeover: client_nct || shared,
        server_max_window_bits: server_bits.unwrap_or(15),
    };
    let mut answer = String::from("permessage-deflate");
    if params.server_no_context_takeover {
        answer.push_str("; server_no_context_takeover");
    }
    if params.client_no_context_takeover {
        answer.push_str("; client_no_context_takeover");
    }
    if let Some(bits) = server_bits {
        // 7.1.2.1: the answer must carry it when offered; the server uses that window.
        answer.push_str(&format!("; server_max_window_bits={bits}"));
    }
    // client_max_window_bits is not echoed: the server inflates with a 32 KiB window,
    // which reads any window the client picks (7.1.2.2 lets the server leave it out).
    Some((params, answer))
}

/// 8..=15 written as 1*DIGIT without a leading zero (7.1.2.1).
fn window_bits(v: &str) -> Option<u8> {
    if v.is_empty() || v.starts_with('0') || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse::<u8>().ok().filter(|b| (8..=15).contains(b))
}

/// A token, or a quoted-string whose content is a token (RFC 6455 9.1).
fn unquote(v: &str) -> Option<&str> {
    let inner = match v.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"')?,
        None => v,
    };
    let is_tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    (!inner.is_empty() && inner.chars().all(is_tchar)).then_some(inner)
}

/// Split on `sep` where it is not inside double quotes.
fn split_outside_quotes(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(values: &[&str]) -> Option<(DeflateParams, String)> {
        negotiate(values.iter().copied(), DeflateMode::Shared)
    }

    fn takeover(values: &[&str]) -> Option<(DeflateParams, String)> {
        negotiate(values.iter().copied(), DeflateMode::Takeover)
    }

    #[test]
    fn browser_offer_gets_no_context_takeover_both_ways_in_shared_mode() {
        let (p, answer) = shared(&["permessage-deflate; client_max_window_bits"]).unwrap();
        assert_eq!(
            answer,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        );
        assert!(p.server_no_context_takeover && p.client_no_context_takeover);
        assert_eq!(p.server_max_window_bits, 15);
    }

    #[test]
    fn takeover_mode_keeps_contexts_unless_the_client_asks() {
        let (p, answer) = takeover(&["permessage-deflate"]).unwrap();
        assert_eq!(answer, "permessage-deflate");
        assert!(!p.server_no_context_takeover && !p.client_no_context_takeover);
        let (p, answer) = takeover(&[
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        ])
        .unwrap();
        assert_eq!(
            answer,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        );
        assert!(p.server_no_context_takeover && p.client_no_context_takeover);
    }

    #[test]
    fn server_max_window_bits_is_honoured_and_echoed_with_or_without_quotes() {
        for offer in [
            "permessage-deflate; server_max_window_bits=10",
            "permessage-deflate;server_max_window_bits=\"10\"",
            "PerMessage-Deflate ; Server_Max_Window_Bits = 10",
        ] {
            let (p, answer) = takeover(&[offer]).unwrap();
            assert_eq!(p.server_max_window_bits, 10, "{offer}");
            assert_eq!(answer, "permessage-deflate; server_max_window_bits=10");
        }
        let (p, _) = shared(&["permessage-deflate; server_max_window_bits=8"]).unwrap();
        assert_eq!(p.server_max_window_bits, 8);
    }

    #[test]
    fn client_max_window_bits_with_and_without_a_value_is_accepted() {
        for offer in [
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; client_max_window_bits=8",
            "permessage-deflate; client_max_window_bits=\"15\"",
        ] {
            assert_eq!(
                takeover(&[offer]).unwrap().1,
                "permessage-deflate",
                "{offer}"
            );
        }
    }

    #[test]
    fn malformed_offers_are_declined_and_the_next_one_is_taken() {
        let bad = [
            "permessage-deflate; foo",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; server_max_window_bits=1a",
            "permessage-deflate; server_max_window_bits=9; server_max_window_bits=9",
            "permessage-deflate; client_max_window_bits=20",
            "permessage-deflate; client_max_window_bits; client_max_window_bits",
            "permessage-deflate; client_max_window_bits=\"\"",
        ];
        for offer in bad {
            assert_eq!(shared(&[offer]), None, "{offer}");
            // A good offer after the bad one in the same header is taken.
            let list = format!("{offer}, permessage-deflate; server_max_window_bits=12");
            let (p, _) = shared(&[&list]).unwrap();
            assert_eq!(p.server_max_window_bits, 12, "{list}");
        }
    }

    #[test]
    fn an_unterminated_quote_declines_the_rest_of_the_header() {
        let list = "permessage-deflate; server_max_window_bits=\"10, permessage-deflate";
        assert_eq!(shared(&[list]), None);
    }

    #[test]
    fn offers_span_headers_and_other_extensions_are_skipped() {
        let (p, _) = takeover(&[
            "x-webkit-deflate-frame; a=\"1,2\"",
            "foo, permessage-deflate; server_max_window_bits=9",
        ])
        .unwrap();
        assert_eq!(p.server_max_window_bits, 9);
        assert_eq!(takeover(&["x-webkit-deflate-frame", "foo; bar"]), None);
        assert_eq!(takeover(&[]), None);
    }

    #[test]
    fn off_declines_everything() {
        assert_eq!(negotiate(["permessage-deflate"], DeflateMode::Off), None);
    }
}
