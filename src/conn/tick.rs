//! Connection times as 32-bit millisecond ticks instead of 16-byte `Instant`s (#17: an
//! idle connection keeps five of them).
//!
//! A tick counts milliseconds since the process's first use of this clock, kept modulo
//! 2^32 (it wraps every 49.7 days). A connection only stores times in the past (when it
//! connected, last read, changed phase) and reads them back against the current time,
//! which is exact for any time less than 49.7 days old. Deadlines and the reactor's
//! timer heap use the full `u64` count, which does not wrap.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

static EPOCH: OnceLock<Instant> = OnceLock::new();

fn epoch() -> Instant {
    *EPOCH.get_or_init(Instant::now)
}

/// Milliseconds from the epoch to `t`, rounded down.
// #17 hotsplit: inlined at the runner's opt-level "s" too (docs/size.md, fourth pass).
#[inline]
pub fn ms(t: Instant) -> u64 {
    t.saturating_duration_since(epoch()).as_millis() as u64
}

/// Milliseconds from the epoch to `t`, rounded up: a deadline kept in milliseconds is
/// never earlier than the `Instant` it stands for.
pub fn ms_ceil(t: Instant) -> u64 {
    let d = t.saturating_duration_since(epoch());
    let ms = d.as_millis() as u64;
    if d.subsec_nanos() % 1_000_000 == 0 {
        ms
    } else {
        ms + 1
    }
}

/// The `Instant` of a millisecond count.
pub fn instant(ms: u64) -> Instant {
    epoch() + Duration::from_millis(ms)
}

/// A duration in milliseconds, rounded up, saturating.
pub fn dur_ms(d: Duration) -> u64 {
    let ms = d.as_millis();
    let ms = if d.subsec_nanos() % 1_000_000 == 0 {
        ms
    } else {
        ms + 1
    };
    u64::try_from(ms).unwrap_or(u64::MAX)
}

/// How far a tick may be ahead of the `now` it is read against (ms).
const AHEAD: u32 = 60_000;

/// A past time as milliseconds since the epoch, modulo 2^32.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tick(u32);

impl Tick {
    /// The tick of `ms` (milliseconds since the epoch).
    pub fn at(ms: u64) -> Tick {
        Tick(ms as u32)
    }

    /// The full millisecond count of this tick, read against `now` (also milliseconds
    /// since the epoch): exact when the tick is less than 49.7 days (less a minute)
    /// older than `now`, or up to a minute newer.
    pub fn ms(self, now: u64) -> u64 {
        // A tick taken a moment after `now` (two clock reads in one event batch) reads
        // as that moment, not as one 49.7 days back.
        let ahead = self.0.wrapping_sub(now as u32);
        if ahead < AHEAD {
            return now + ahead as u64;
        }
        now.saturating_sub((now as u32).wrapping_sub(self.0) as u64)
    }

    /// The `Instant` of this tick, read against `now` as [`Tick::ms`] does.
    pub fn instant(self, now: Instant) -> Instant {
        instant(self.ms(ms(now)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tick_reads_back_exactly_until_it_is_49_days_old_even_across_the_wrap() {
        let day = 86_400_000u64;
        for t in [
            0u64,
            5,
            u32::MAX as u64 - 3,
            u32::MAX as u64 + 10,
            7 * (1 << 32) + 9,
        ] {
            let tick = Tick::at(t);
            for age in [0u64, 1, 999, day, 49 * day] {
                assert_eq!(tick.ms(t + age), t, "t {t} age {age}");
            }
            if t >= 3 {
                assert_eq!(tick.ms(t - 3), t, "a tick taken just after now, t {t}");
            }
        }
    }

    #[test]
    fn deadlines_in_milliseconds_are_never_early() {
        let now = Instant::now();
        let t = now + Duration::from_micros(1500);
        assert!(instant(ms_ceil(t)) >= t);
        assert!(instant(ms(t)) <= t);
        assert_eq!(dur_ms(Duration::from_micros(1500)), 2);
        assert_eq!(dur_ms(Duration::from_millis(7)), 7);
        assert_eq!(dur_ms(Duration::MAX), u64::MAX);
    }
}
