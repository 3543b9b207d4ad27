//! Sizes and durations as the runner's flags and wsbench's options write them: one
//! parser for both, so `--high-water 64KiB` or `--idle-timeout 30s` means the same in
//! each. The callers add what is theirs: the flag named in the error, a zero refused.

use std::time::Duration;

/// A byte count: a whole number, alone or with a unit `B`, `K`/`KB`/`KiB`, `M`/`MB`/
/// `MiB`, `G`/`GB`/`GiB` (any case; every K is 1024). `None` for anything else or a
/// count past `u64`.
pub fn size(v: &str) -> Option<u64> {
    let (num, unit) = split_number(v.trim());
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// A duration: a number of seconds, or a number with `ms`, `s` or `m`; the number may
/// have a fraction (`1.5s`, `0.25`). `None` for anything else (a sign, an exponent, no
/// digits) or a duration past what [`Duration`] holds.
pub fn duration(v: &str) -> Option<Duration> {
    let (num, unit) = split_number(v.trim());
    let (whole, frac) = num.split_once('.').unwrap_or((num, ""));
    if whole.is_empty() && frac.is_empty() || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: f64 = num.parse().ok()?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(secs).ok()
}

/// The leading digits (and `.`) of `t`, and the rest.
fn split_number(t: &str) -> (&str, &str) {
    let at = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    t.split_at(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(size("1024"), Some(1024));
        assert_eq!(size(" 7b "), Some(7));
        assert_eq!(size("64KiB"), Some(64 << 10));
        assert_eq!(size("64k"), Some(64 << 10));
        assert_eq!(size("2M"), Some(2 << 20));
        assert_eq!(size("16MiB"), Some(16 << 20));
        assert_eq!(size("1gb"), Some(1 << 30));
        assert_eq!(size("0"), Some(0));
        for bad in [
            "",
            "KiB",
            "-1",
            "1.5M",
            "1 TiB",
            "12x",
            "18446744073709551615K",
        ] {
            assert_eq!(size(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(duration("10"), Some(Duration::from_secs(10)));
        assert_eq!(duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(duration("0.25"), Some(Duration::from_millis(250)));
        assert_eq!(duration("0"), Some(Duration::ZERO));
        for bad in [
            "", "s", ".", "-1", "+1", "1e3", "inf", "1.2.3", "10h", "1 0", "1e400",
        ] {
            assert_eq!(duration(bad), None, "{bad:?}");
        }
        // Past what a Duration holds.
        assert_eq!(duration(&"9".repeat(30)), None);
    }
}
