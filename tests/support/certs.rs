//! Test certificates: a CA and a server certificate for `localhost` signed by it, made
//! with rcgen, and the rustls configurations of both ends.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::CertificateDer;

use super::binary::Scratch;

/// The text of `tests/fixtures/<name>`.
pub fn fixture(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read_to_string(p).unwrap()
}

/// A test CA and a server certificate for `localhost` signed by it, as files.
pub struct Pki {
    pub dir: Scratch,
    pub ca_der: CertificateDer<'static>,
    /// The CA alone, PEM: what `post --cacert` trusts.
    pub ca_pem: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pki {
    /// `leaf_key`: the server key rcgen signs with; `key_file`: what goes in the key file
    /// (the same key, possibly in another format).
    pub fn new(leaf_key: KeyPair, key_file: &str, expired: bool) -> Pki {
        let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "wss test CA");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        if expired {
            params.not_before = rcgen::date_time_ymd(2001, 1, 1);
            params.not_after = rcgen::date_time_ymd(2002, 1, 1);
        }
        let leaf = params.signed_by(&leaf_key, &issuer).unwrap();
        let dir = Scratch::new("wss-test");
        let cert = dir.write("chain.pem", &(leaf.pem() + &ca_cert.pem()));
        let key = dir.write("key.pem", key_file);
        let ca_pem = dir.write("ca.pem", &ca_cert.pem());
        Pki {
            dir,
            ca_der: ca_cert.der().clone(),
            ca_pem,
            cert,
            key,
        }
    }

    /// An ECDSA P-256 server key in PKCS#8.
    pub fn ecdsa() -> Pki {
        let k = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let pem = k.serialize_pem();
        Pki::new(k, &pem, false)
    }

    /// The server's configuration, loaded by the runner's own loader.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        configurapi_runner_ws::tls::load(&self.cert, &self.key)
            .unwrap()
            .server_config
    }

    /// A client that trusts only this CA and offers ALPN `http/1.1`.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(cfg)
    }
}
