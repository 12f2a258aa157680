//! Timestamps as restic writes them: RFC 3339 with nanoseconds (trailing
//! zeros trimmed, as Go's `RFC3339Nano`) and the local UTC offset.

use jiff::tz::{Offset, TimeZone};
use jiff::{Timestamp, Zoned};

/// Formats `ts` in the given offset like Go's `time.RFC3339Nano`.
pub fn format(ts: Timestamp, offset: Offset) -> String {
    let dt = offset.to_datetime(ts);
    let mut s = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        dt.year(),
        dt.month(),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second()
    );
    let nanos = dt.subsec_nanosecond();
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    let secs = offset.seconds();
    if secs == 0 {
        s.push('Z');
    } else {
        let sign = if secs < 0 { '-' } else { '+' };
        let a = secs.unsigned_abs();
        s.push_str(&format!("{sign}{:02}:{:02}", a / 3600, (a % 3600) / 60));
    }
    s
}

/// The system's time zone, looked up once: a backup formats three times
/// per file, and each lookup would otherwise consult the environment and
/// the zone database again.
fn local_zone() -> &'static TimeZone {
    static ZONE: std::sync::OnceLock<TimeZone> = std::sync::OnceLock::new();
    ZONE.get_or_init(TimeZone::system)
}

/// Formats `ts` in the system's local time zone.
pub fn format_local(ts: Timestamp) -> String {
    format(ts, local_zone().to_offset(ts))
}

/// Now, in the local time zone.
pub fn now_rfc3339() -> String {
    format_local(Timestamp::now())
}

/// Parses an RFC 3339 time and keeps its own offset as a fixed time zone,
/// so calendar questions (which hour, day, ISO week) are answered in the
/// offset the snapshot was taken in, as restic does.
pub fn parse(s: &str) -> Option<Zoned> {
    let ts: Timestamp = s.parse().ok()?;
    let offset = parse_offset(s)?;
    Some(ts.to_zoned(TimeZone::fixed(offset)))
}

fn parse_offset(s: &str) -> Option<Offset> {
    if s.ends_with('Z') || s.ends_with('z') {
        return Some(Offset::UTC);
    }
    let tail = s.get(s.len().checked_sub(6)?..)?;
    let sign = match tail.as_bytes()[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let h: i32 = tail.get(1..3)?.parse().ok()?;
    let m: i32 = tail.get(4..6)?.parse().ok()?;
    Offset::from_seconds(sign * (h * 3600 + m * 60)).ok()
}

/// Converts a file time (seconds, nanoseconds since the epoch) to restic's
/// text form in the local zone. Out-of-range values are clamped to what
/// Go can represent, as restic's `fixTime` does.
pub fn from_unix(secs: i64, nanos: i64) -> String {
    let clamped = if secs < 0 {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    };
    let ts = Timestamp::new(secs, nanos as i32).unwrap_or(clamped);
    format_local(ts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_style_round_trip() {
        let z = parse("2024-03-31T01:59:59.5+02:00").unwrap();
        assert_eq!(z.offset().seconds(), 7200);
        assert_eq!(
            format(z.timestamp(), z.offset()),
            "2024-03-31T01:59:59.5+02:00"
        );
        let z = parse("2020-01-01T00:00:00Z").unwrap();
        assert_eq!(format(z.timestamp(), z.offset()), "2020-01-01T00:00:00Z");
        let z = parse("2019-12-31T23:00:00.123456789-05:30").unwrap();
        assert_eq!(
            format(z.timestamp(), z.offset()),
            "2019-12-31T23:00:00.123456789-05:30"
        );
    }
}
