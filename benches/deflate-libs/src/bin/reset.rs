use std::time::Instant;
fn main() {
    use miniz_oxide::deflate::core::*;
    use miniz_oxide::inflate::stream::*;
    let n = 20000;
    let flags = create_comp_flags_from_zip_params(1, -15, 0);
    let mut c = Box::new(CompressorOxide::new(flags));
    let mut inf = InflateState::new_boxed(miniz_oxide::DataFormat::Raw);
    for _ in 0..3 {
        let t = Instant::now();
        for _ in 0..n { c.reset(); }
        let a = t.elapsed().as_secs_f64() * 1e6 / n as f64;
        let t = Instant::now();
        for _ in 0..n { inf.reset_as(ZeroReset); }
        let b = t.elapsed().as_secs_f64() * 1e6 / n as f64;
        println!("compressor reset {a:.1} us, inflater zero reset {b:.1} us");
    }
}
