//! `GET /@connections/{id}`: what the server knows about one connection, as JSON.

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

/// One connection's facts, filled in by the reactor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnInfo {
    /// When the upgrade finished.
    pub connected_at: SystemTime,
    /// When a frame last arrived from the client.
    pub last_active_at: SystemTime,
    /// The peer's address.
    pub source_ip: IpAddr,
    /// The subprotocol the handshake answered with, if any.
    pub subprotocol: Option<String>,
    /// `identity.id` set while handling `on_connect` (8.3), if any.
    pub identity_id: Option<String>,
}

impl ConnInfo {
    /// `{"connectionId","connectedAt","lastActiveAt","sourceIp","subprotocol","identityId"}`,
    /// times as ISO-8601 UTC with milliseconds, absent values as `null`.
    pub fn to_json(&self, id: &str) -> Vec<u8> {
        let v = json!({
            "connectionId": id,
            "connectedAt": iso8601(self.connected_at),
            "lastActiveAt": iso8601(self.last_active_at),
            "sourceIp": self.source_ip.to_string(),
            "subprotocol": self.subprotocol.as_deref().map_or(Value::Null, Value::from),
            "identityId": self.identity_id.as_deref().map_or(Value::Null, Value::from),
        });
        serde_json::to_vec(&v).unwrap_or_default()
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` (what JavaScript's `toISOString` gives). Times before 1970
/// are written as the epoch.
pub fn iso8601(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (y, m, day) = civil_from_days((secs / 86_400) as i64);
    let s = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        s / 3600,
        s / 60 % 60,
        s % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64, millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis)
    }

    #[test]
    fn iso8601_matches_known_instants() {
        assert_eq!(iso8601(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(at(951_782_400, 5)), "2000-02-29T00:00:00.005Z");
        assert_eq!(iso8601(at(1_709_251_199, 999)), "2024-02-29T23:59:59.999Z");
        assert_eq!(iso8601(at(1_798_761_599, 0)), "2026-12-31T23:59:59.000Z");
        assert_eq!(iso8601(at(4_102_444_800, 0)), "2100-01-01T00:00:00.000Z");
        assert_eq!(
            iso8601(UNIX_EPOCH - Duration::from_secs(5)),
            "1970-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn info_json_has_every_field() {
        let info = ConnInfo {
            connected_at: at(1_700_000_000, 123),
            last_active_at: at(1_700_000_060, 0),
            source_ip: "::1".parse().unwrap(),
            subprotocol: Some("chat".into()),
            identity_id: None,
        };
        assert_eq!(
            String::from_utf8(info.to_json("c-1")).unwrap(),
            r#"{"connectionId":"c-1","connectedAt":"2023-11-14T22:13:20.123Z","lastActiveAt":"2023-11-14T22:14:20.000Z","sourceIp":"::1","subprotocol":"chat","identityId":null}"#
        );
    }
}
