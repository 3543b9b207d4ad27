fn main() {
    use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
    let msg = std::env::args().collect::<Vec<_>>().join(" ").into_bytes();
    let mut c = Compress::new(Compression::new(1), false);
    let mut out = Vec::with_capacity(8192);
    c.compress_vec(&msg, &mut out, FlushCompress::Sync).unwrap();
    let mut d = Decompress::new(false);
    let mut back = Vec::with_capacity(8192);
    d.decompress_vec(&out, &mut back, FlushDecompress::Sync).unwrap();
    println!("{}", back.len());
}
