//! The floor of `wsbench startup` on this machine: a process that binds, listens and
//! accepts, nothing else (benches/startup_ab.sh builds it with `rustc -O`).
fn main() {
    let port = std::env::args().nth(1).unwrap_or_else(|| "9700".into());
    let listener = std::net::TcpListener::bind(format!("127.0.0.1:{port}")).expect("bind");
    for stream in listener.incoming() {
        drop(stream);
    }
}
