fn main() {
    use miniz_oxide::deflate::core::*;
    use miniz_oxide::inflate::stream::*;
    let msg = std::env::args().collect::<Vec<_>>().join(" ").into_bytes();
    let mut c = Box::new(CompressorOxide::new(create_comp_flags_from_zip_params(1, -15, 0)));
    let mut out = vec![0u8; 8192];
    let (_, _, w) = compress(&mut c, &msg, &mut out, TDEFLFlush::Sync);
    let mut inf = InflateState::new_boxed(miniz_oxide::DataFormat::Raw);
    let mut back = vec![0u8; 8192];
    let r = inflate(&mut inf, &out[..w], &mut back, miniz_oxide::MZFlush::None);
    println!("{}", r.bytes_written);
}
