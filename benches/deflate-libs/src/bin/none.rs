fn main() {
    let msg = std::env::args().collect::<Vec<_>>().join(" ").into_bytes();
    println!("{}", msg.len());
}
