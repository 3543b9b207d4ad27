//! The rustls server configuration from PEM files. No I/O beyond reading the two files.
//!
//! Certificates: a PEM chain (leaf first). Keys: RSA, ECDSA or Ed25519 in PKCS#8,
//! PKCS#1 (`RSA PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`) PEM. Every failure is one line
//! that names the file; `main` prints it and exits 2. An expired leaf certificate is a
//! warning ([`TlsFiles::expired_warning`]), not an error. The crypto provider is ring
//! (docs/architecture.md, "TLS").

use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A loaded configuration and what was noticed while loading it.
pub struct TlsFiles {
    /// Ready for `rustls::ServerConnection::new`.
    pub server_config: Arc<rustls::ServerConfig>,
    /// `Some(line)` when the leaf certificate's notAfter has passed.
    pub expired_warning: Option<String>,
}

/// Read `cert` (PEM chain) and `key` (PEM private key) and build a server config with
/// ALPN `http/1.1`. The error is one line naming the file at fault.
pub fn load(cert: &Path, key: &Path) -> Result<TlsFiles, String> {
    let certs = read_certs(cert)?;
    let key_der = read_key(key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs.clone(), key_der)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => format!(
                "key file {} does not match the certificate in {}",
                key.display(),
                cert.display()
            ),
            e => format!(
                "key file {} cannot be used with the certificate in {}: {e}",
                key.display(),
                cert.display()
            ),
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let expired_warning = match not_after(&certs[0]) {
        Some(t) if t < unix_now() => Some(format!(
            "certificate file {} has expired (notAfter {}); clients will refuse it",
            cert.display(),
            format_time(t)
        )),
        _ => None,
    };
    Ok(TlsFiles {
        server_config: Arc::new(config),
        expired_warning,
    })
}

/// A TLS client that trusts only the CA certificates in the PEM file `ca` (the `post`
/// subcommand's `--cacert`). An error is one line naming the file.
pub fn client_config(ca: &Path) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_certs(ca)? {
        roots
            .add(cert)
            .map_err(|e| format!("certificate file {}: {e}", ca.display()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let iter = CertificateDer::pem_file_iter(path).map_err(|e| {
        format!(
            "cannot read certificate file {}: {}",
            path.display(),
            io_msg(e)
        )
    })?;
    let certs: Vec<_> = iter
        .collect::<Result<_, _>>()
        .map_err(|e| format!("certificate file {} is not valid PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "certificate file {} holds no certificate (expected PEM CERTIFICATE blocks)",
            path.display()
        ));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        pem::Error::Io(_) => format!("cannot read key file {}: {}", path.display(), io_msg(e)),
        pem::Error::NoItemsFound => format!(
            "key file {} holds no private key (expected PEM PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)",
            path.display()
        ),
        e => format!("key file {} is not valid PEM: {e}", path.display()),
    })
}

fn io_msg(e: pem::Error) -> String {
    match e {
        pem::Error::Io(io) => io.to_string(),
        e => e.to_string(),
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// One DER TLV at the start of `d`: (tag, content, rest).
fn tlv(d: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, d) = d.split_first()?;
    let (&l0, mut d) = d.split_first()?;
    let len = if l0 < 0x80 {
        l0 as usize
    } else {
        let n = (l0 & 0x7F) as usize;
        if n == 0 || n > 4 || d.len() < n {
            return None;
        }
        let mut len = 0usize;
        for &b in &d[..n] {
            len = (len << 8) | b as usize;
        }
        d = &d[n..];
        len
    };
    (d.len() >= len).then(|| (tag, &d[..len], &d[len..]))
}

/// The leaf's notAfter as Unix seconds: Certificate -> tbsCertificate -> validity.
fn not_after(cert: &[u8]) -> Option<i64> {
    let (_, cert, _) = tlv(cert)?;
    let (_, mut tbs, _) = tlv(cert)?;
    if tbs.first() == Some(&0xA0) {
        tbs = tlv(tbs)?.2; // [0] version
    }
    let rest = tlv(tbs)?.2; // serialNumber
    let rest = tlv(rest)?.2; // signature
    let rest = tlv(rest)?.2; // issuer
    let (_, validity, _) = tlv(rest)?;
    let (_, _, rest) = tlv(validity)?; // notBefore
    let (tag, t, _) = tlv(rest)?;
    parse_time(tag, t)
}

/// UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`).
fn parse_time(tag: u8, t: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(t).ok()?.strip_suffix('Z')?;
    let (year, rest) = match (tag, s.len()) {
        (0x17, 12) => {
            let yy: i64 = s[..2].parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &s[2..])
        }
        (0x18, 14) => (s[..4].parse().ok()?, &s[4..]),
        _ => return None,
    };
    let n = |i: usize| -> Option<i64> { rest.get(i..i + 2)?.parse().ok() };
    let (mo, d, h, mi, se) = (n(0)?, n(2)?, n(4)?, n(6)?, n(8)?);
    Some(days_from_civil(year, mo, d) * 86400 + h * 3600 + mi * 60 + se)
}

/// Days since 1970-01-01 (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn format_time(t: i64) -> String {
    let days = t.div_euclid(86400);
    let secs = t.rem_euclid(86400);
    // civil_from_days
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asn1_times_convert_to_unix_seconds() {
        assert_eq!(parse_time(0x17, b"700101000000Z"), Some(0));
        assert_eq!(parse_time(0x17, b"000229120000Z"), Some(951_825_600));
        assert_eq!(parse_time(0x18, b"20380119031408Z"), Some(2_147_483_648));
        assert_eq!(parse_time(0x17, b"7001010000Z"), None);
        assert_eq!(format_time(951_825_600), "2000-02-29 12:00:00 UTC");
    }
}
