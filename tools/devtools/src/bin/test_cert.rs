//! Write a self-signed ECDSA P-256 certificate for `localhost`/127.0.0.1 and its key
//! (PKCS#8) as `cert.pem` and `key.pem` into the directory given (default `.`).
//! For trying `--key`/`--cert` locally and for CI's Autobahn run over wss://; never
//! for production.

fn main() {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| ".".into()));
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("params");
    let cert = params.self_signed(&key).expect("certificate");
    std::fs::write(dir.join("cert.pem"), cert.pem()).expect("writing cert.pem");
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).expect("writing key.pem");
    println!("wrote {0}/cert.pem and {0}/key.pem", dir.display());
}
