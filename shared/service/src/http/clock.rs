//! Times as the dashboard shows them. An event's time is its entry id's milliseconds (Redis's
//! clock); a reader wants `14:06:46.205` and "3 s ago", not `1764770806205-0`. Every time
//! on the page is UTC, and the page says so, so two readers in different zones agree.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

const DAY_MS: u64 = 86_400_000;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's
/// algorithm).
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

/// `2026-12-03` (UTC).
pub fn date(ms: u64) -> String {
    let (y, m, d) = civil_from_days((ms / DAY_MS) as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `14:06:46.205` (UTC).
pub fn time_of_day(ms: u64) -> String {
    let rem = ms % DAY_MS;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        rem / 3_600_000,
        rem % 3_600_000 / 60_000,
        rem % 60_000 / 1000,
        rem % 1000
    )
}

/// `14:06:46.205` when `ms` falls on the same UTC day as `now_ms`, else
/// `2026-12-02 14:06:46.205`: the date only where it adds something.
pub fn clock(ms: u64, now_ms: u64) -> String {
    if ms / DAY_MS == now_ms / DAY_MS {
        time_of_day(ms)
    } else {
        format!("{} {}", date(ms), time_of_day(ms))
    }
}

/// `2026-12-03T14:06:46.205Z`, for a `<time datetime>` attribute.
pub fn iso(ms: u64) -> String {
    format!("{}T{}Z", date(ms), time_of_day(ms))
}

/// "just now", "3 s ago", "5 min ago", "2 h ago", "4 d ago". The page's script counts on
/// with the same words (`agoText` in the dashboard's script).
pub fn ago(ms: u64, now_ms: u64) -> String {
    let d = now_ms.saturating_sub(ms);
    let s = d / 1000;
    if d < 1000 {
        "just now".to_owned()
    } else if s < 60 {
        format!("{s} s ago")
    } else if s < 3600 {
        format!("{} min ago", s / 60)
    } else if s < 86_400 {
        format!("{} h ago", s / 3600)
    } else {
        format!("{} d ago", s / 86_400)
    }
}

/// A duration between two events: "350 ms", "1.2 s", "4 min 3 s", "2 h 5 min".
pub fn span(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        format!("{} min {} s", ms / 60_000, ms % 60_000 / 1000)
    } else {
        format!("{} h {} min", ms / 3_600_000, ms % 3_600_000 / 60_000)
    }
}

/// `<time …>14:06:46.205</time> <span class="ago" …>3 s ago</span>`; the script keeps the
/// "ago" current from `data-ms`.
pub fn write_time(html: &mut String, ms: u64, now_ms: u64) {
    let _ = write!(
        html,
        "<time datetime=\"{}\" data-ms=\"{ms}\">{}</time> \
         <span class=\"ago\" data-ms=\"{ms}\">{}</span>",
        iso(ms),
        clock(ms, now_ms),
        ago(ms, now_ms)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-03 14:06:46.205 UTC.
    const T: u64 = 1_796_306_806_205;

    #[test]
    fn times_read_as_a_clock_in_utc() {
        assert_eq!(iso(T), "2026-12-03T14:06:46.205Z");
        assert_eq!(clock(T, T + 3_000), "14:06:46.205");
        // Another day: the date comes first.
        assert_eq!(clock(T, T + DAY_MS), "2026-12-03 14:06:46.205");
        assert_eq!(iso(0), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn ages_read_in_words() {
        assert_eq!(ago(T, T + 400), "just now");
        assert_eq!(ago(T, T + 3_999), "3 s ago");
        assert_eq!(ago(T, T + 125_000), "2 min ago");
        assert_eq!(ago(T, T + 2 * 3_600_000 + 1), "2 h ago");
        assert_eq!(ago(T, T + 4 * DAY_MS), "4 d ago");
        // A clock a little behind the log's is not "in the future".
        assert_eq!(ago(T + 50, T), "just now");
    }

    #[test]
    fn spans_read_in_words() {
        assert_eq!(span(350), "350 ms");
        assert_eq!(span(1_250), "1.2 s");
        assert_eq!(span(243_000), "4 min 3 s");
        assert_eq!(span(7_500_000), "2 h 5 min");
    }
}
