use std::time::Instant;
fn json() -> Vec<u8> {
    let mut s = String::from("[");
    let mut i = 0;
    while s.len() < 4096 - 80 {
        s.push_str(&format!("{{\"id\":{i},\"name\":\"item-{i}\",\"price\":{}.5,\"tags\":[\"alpha\",\"beta\"],\"ok\":{}}},", i * 3, i % 2 == 0));
        i += 1;
    }
    s.push_str("{}]");
    s.into_bytes()
}
fn main() {
    let msg = json();
    let n = 20000;
    // miniz_oxide as the runner uses it: level 1, reset per message, sync flush.
    use miniz_oxide::deflate::core::*;
    use miniz_oxide::inflate::stream::*;
    for level in [1i32, 6] {
        let flags = create_comp_flags_from_zip_params(level, -15, 0);
        let mut c = Box::new(CompressorOxide::new(flags));
        let mut inf = InflateState::new_boxed(miniz_oxide::DataFormat::Raw);
        let mut out = vec![0u8; 8192];
        let mut back = vec![0u8; 8192];
        let mut zlen = 0;
        let t = Instant::now();
        for _ in 0..n {
            let (_, _, w) = compress(&mut c, &msg, &mut out, TDEFLFlush::Sync);
            c.reset();
            zlen = w;
            let r = inflate(&mut inf, &out[..w], &mut back, miniz_oxide::MZFlush::None);
            assert_eq!(r.bytes_written, msg.len());
            inf.reset_as(ZeroReset);
        }
        let us = t.elapsed().as_secs_f64() * 1e6 / n as f64;
        println!("miniz_oxide level {level}: {zlen} bytes, {us:.1} us compress+inflate per 4 KiB");
    }
    use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
    for level in [1u32, 6] {
        let mut c = Compress::new(Compression::new(level), false);
        let mut d = Decompress::new(false);
        let mut out = Vec::with_capacity(8192);
        let mut back = Vec::with_capacity(8192);
        let t = Instant::now();
        let mut zlen = 0;
        for _ in 0..n {
            out.clear(); back.clear();
            c.compress_vec(&msg, &mut out, FlushCompress::Sync).unwrap();
            c.reset();
            zlen = out.len();
            d.decompress_vec(&out, &mut back, FlushDecompress::Sync).unwrap();
            assert_eq!(back.len(), msg.len());
            d.reset(false);
        }
        let us = t.elapsed().as_secs_f64() * 1e6 / n as f64;
        println!("flate2+zlib-rs level {level}: {zlen} bytes, {us:.1} us compress+inflate per 4 KiB");
    }
}
