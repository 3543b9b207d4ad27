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
    // Identical code folding (#17: -36 KiB): functions whose machine code is the same
    // (mostly generic copies) are kept once. Only lld has it, which rustc links with by
    // default on x86_64 Linux since 1.90; Rust does not promise distinct function addresses,
    // and lld folds no data under --icf=all. RUNNER_NO_ICF=1 leaves it out (another
    // linker, set by -C linker or RUSTFLAGS, may not know the flag).
    println!("cargo:rerun-if-env-changed=RUNNER_NO_ICF");
    println!("cargo:rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");
    let target = std::env::var("TARGET").unwrap_or_default();
    let custom_linker = std::env::var("CARGO_ENCODED_RUSTFLAGS")
        .is_ok_and(|f| f.contains("linker"))
        || std::env::var_os("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER").is_some();
    if target == "x86_64-unknown-linux-gnu"
        && rustc_minor() >= Some(90)
        && !custom_linker
        && std::env::var_os("RUNNER_NO_ICF").is_none()
    {
        println!("cargo:rustc-link-arg-bins=-Wl,--icf=all");
    }
}

/// The minor version of the compiler building this (1.MINOR.x).
fn rustc_minor() -> Option<u32> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = std::process::Command::new(rustc).arg("-V").output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    text.split_whitespace()
        .nth(1)?
        .split('.')
        .nth(1)?
        .parse()
        .ok()
}
