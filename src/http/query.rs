//! Percent-decoding and `application/x-www-form-urlencoded` query parsing, lenient the
//! way Node's `querystring` is: a `%` not followed by two hex digits stays as it is.

/// Decode `%XX` escapes (and `+` as a space when `plus_is_space`). Bytes that do not form
/// UTF-8 after decoding are replaced with U+FFFD.
pub fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => match (hex(b.get(i + 1)), hex(b.get(i + 2))) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' if plus_is_space => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

fn hex(c: Option<&u8>) -> Option<u8> {
    match c? {
        c @ b'0'..=b'9' => Some(c - b'0'),
        c @ b'a'..=b'f' => Some(c - b'a' + 10),
        c @ b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Parse a query string (without the `?`) into decoded `(key, value)` pairs, in order.
/// Empty pieces (`a=1&&b=2`) are skipped; a key without `=` has the value `""`.
pub fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k, true), percent_decode(v, true))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_escapes_and_plus() {
        assert_eq!(percent_decode("a%20b+c", true), "a b c");
        assert_eq!(percent_decode("a+b", false), "a+b");
        assert_eq!(percent_decode("%40connections", false), "@connections");
        assert_eq!(percent_decode("%e2%82%ac", false), "€");
    }

    #[test]
    fn bad_escapes_stay_literal() {
        assert_eq!(percent_decode("100%", true), "100%");
        assert_eq!(percent_decode("%4", true), "%4");
        assert_eq!(percent_decode("%zz%41", true), "%zzA");
        assert_eq!(percent_decode("%ff", true), "\u{fffd}");
    }

    #[test]
    fn parses_pairs_in_order() {
        assert_eq!(
            parse_query("id=abc&x&&y=1%262&id=2"),
            vec![
                ("id".to_string(), "abc".to_string()),
                ("x".to_string(), String::new()),
                ("y".to_string(), "1&2".to_string()),
                ("id".to_string(), "2".to_string()),
            ]
        );
        assert!(parse_query("").is_empty());
    }
}
