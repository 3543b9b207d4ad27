//! Link-time settings for the runner's binaries (the library is unaffected).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    // Packed relative relocations (DT_RELR): a position-independent binary keeps ASLR
    // but stores its ~10,000 pointer fix-ups as a bitmap instead of 24 bytes each
    // (about 240 KiB less, docs/size.md). Needs GNU ld >= 2.38 or lld
    // to link and glibc >= 2.36 to run (Debian 12, Ubuntu 22.10); RUNNER_NO_RELR=1 at
    // build time leaves it out for older systems.
    println!("cargo:rerun-if-env-changed=RUNNER_NO_RELR");
    if os == "linux" && env == "gnu" && std::env::var_os("RUNNER_NO_RELR").is_none() {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
