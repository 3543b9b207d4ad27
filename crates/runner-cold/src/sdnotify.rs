//! systemd's readiness protocol (`Type=notify`, sd_notify(3)), without libsystemd: one
//! datagram of `KEY=VALUE` lines to the Unix socket named by `$NOTIFY_SOCKET` (a path,
//! or an abstract name written with a leading `@`). The runner sends `READY=1` once its
//! listeners are bound, `RELOADING=1` (with `MONOTONIC_USEC`) then `READY=1` around a
//! SIGHUP reload, and `STOPPING=1` when a drain starts (docs/operations.md#systemd).
//! Without `$NOTIFY_SOCKET` (not under systemd) every call does nothing.

use std::sync::OnceLock;

/// The socket address, read once: the environment is not read again from the
/// signal thread.
static SOCKET: OnceLock<Option<String>> = OnceLock::new();

fn socket() -> Option<&'static str> {
    SOCKET
        .get_or_init(|| {
            std::env::var("NOTIFY_SOCKET")
                .ok()
                .filter(|s| !s.is_empty())
        })
        .as_deref()
}

/// Sends `state` (`READY=1`, ...) to systemd when it asked for notifications. A
/// failure is logged at debug and otherwise ignored: the service runs the same, and
/// systemd's own start timeout reports a readiness that never came.
pub fn notify(state: &str) {
    let Some(path) = socket() else { return };
    if let Err(e) = send(path, state) {
        log::debug!("sd_notify {state:?} to {path}: {e}");
    }
}

/// [`notify`] of `RELOADING=1` with the `MONOTONIC_USEC` systemd 253+ matches reloads
/// by (CLOCK_MONOTONIC in microseconds; left out when it cannot be read).
pub fn reloading() {
    if socket().is_none() {
        return;
    }
    match monotonic_usec() {
        Some(us) => notify(&format!("RELOADING=1\nMONOTONIC_USEC={us}")),
        None => notify("RELOADING=1"),
    }
}

/// CLOCK_MONOTONIC now, in microseconds. std's `Instant` is that clock on Linux but
/// keeps it private, and reading it through libc would be new `unsafe` code (which the
/// project does not add) for one number; the `Debug` form of an `Instant` shows the
/// `tv_sec` and `tv_nsec` fields, so they are read from there (None should the form
/// ever change; the unit test would say so).
fn monotonic_usec() -> Option<u64> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    let s = format!("{:?}", std::time::Instant::now());
    let field = |name: &str| -> Option<u64> {
        let rest = &s[s.find(name)? + name.len()..];
        let end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        rest[..end].parse().ok()
    };
    let (sec, nsec) = (field("tv_sec: ")?, field("tv_nsec: ")?);
    (nsec < 1_000_000_000).then(|| sec * 1_000_000 + nsec / 1_000)
}

#[cfg(target_os = "linux")]
fn send(path: &str, state: &str) -> std::io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let addr = match path.strip_prefix('@') {
        Some(name) => SocketAddr::from_abstract_name(name.as_bytes())?,
        None => SocketAddr::from_pathname(path)?,
    };
    let sock = UnixDatagram::unbound()?;
    sock.send_to_addr(state.as_bytes(), &addr)?;
    Ok(())
}

#[cfg(all(unix, not(target_os = "linux")))]
fn send(path: &str, state: &str) -> std::io::Result<()> {
    std::os::unix::net::UnixDatagram::unbound()?
        .send_to(state.as_bytes(), path)
        .map(|_| ())
}

#[cfg(not(unix))]
fn send(_: &str, _: &str) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    #[cfg(target_os = "linux")]
    #[test]
    fn the_monotonic_clock_reads_and_does_not_go_back() {
        let a = super::monotonic_usec().expect("Instant's Debug form changed");
        let b = super::monotonic_usec().unwrap();
        assert!(a > 0 && b >= a, "{a} {b}");
        // CLOCK_MONOTONIC never runs ahead of CLOCK_BOOTTIME, which /proc/uptime shows.
        let up: f64 = std::fs::read_to_string("/proc/uptime")
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(a as f64 / 1e6 <= up + 1.0, "{a} us against uptime {up} s");
    }
}
