//! Output helpers: times (UTC, from stream-id milliseconds), durations, counts, tables, JSON.
//!
//! Print with [`outln!`](crate::outln), not `println!`: `println!` panics when stdout is a
//! closed pipe (`pantheon keys n1 | head`), and the CLI never panics.

use std::time::Duration;

/// `println!` that ignores a closed stdout instead of panicking.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// `print!` that ignores a closed stdout instead of panicking.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout().lock(), $($arg)*);
    }};
}

pub use pantheon_service::http::clock::now_ms;

/// `2025-05-01 12:00:00.123` (UTC).
pub fn timestamp(ms: u64) -> String {
    use pantheon_service::http::clock::{date, time_of_day};
    format!("{} {}", date(ms), time_of_day(ms))
}

/// `340 ms`, `1.2 s`, `3 min 5 s`, `2 h 10 min`, `3 d 4 h`.
pub fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", d.as_secs_f64())
    } else if ms < 3_600_000 {
        format!("{} min {} s", ms / 60_000, ms % 60_000 / 1000)
    } else if ms < 86_400_000 {
        format!("{} h {} min", ms / 3_600_000, ms % 3_600_000 / 60_000)
    } else {
        format!("{} d {} h", ms / 86_400_000, ms % 86_400_000 / 3_600_000)
    }
}

/// The duration between two millisecond times (0 if `to` is earlier).
pub fn between(from_ms: u64, to_ms: u64) -> Duration {
    Duration::from_millis(to_ms.saturating_sub(from_ms))
}

/// `1,234,567`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Left-aligned columns, two spaces apart; the last column is not padded.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut s = String::new();
        for (i, cell) in cells.into_iter().enumerate() {
            s.push_str(cell);
            if i < last {
                let pad = widths[i].saturating_sub(cell.chars().count()) + 2;
                s.push_str(&" ".repeat(pad));
            }
        }
        s.trim_end().to_owned()
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push('\n');
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// `node-2→node-1 170, node-2→node-3 164` (`(none)` = no owner).
pub fn flows(flows: &[pantheon_domain::event::Flow]) -> String {
    let name = |n: &Option<pantheon_domain::NodeId>| {
        n.as_ref()
            .map_or_else(|| "(none)".to_owned(), ToString::to_string)
    };
    flows
        .iter()
        .map(|f| format!("{}→{} {}", name(&f.from), name(&f.to), count(f.keys)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Flows as JSON objects `{from, to, keys}` (`null` = no owner).
pub fn flows_json(flows: &[pantheon_domain::event::Flow]) -> serde_json::Value {
    flows
        .iter()
        .map(|f| {
            serde_json::json!({
                "from": f.from.as_ref().map(ToString::to_string),
                "to": f.to.as_ref().map(ToString::to_string),
                "keys": f.keys,
            })
        })
        .collect()
}

/// Prints a value as pretty JSON on stdout.
pub fn json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    crate::outln!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        assert_eq!(timestamp(0), "1970-01-01 00:00:00.000");
        assert_eq!(timestamp(951_782_400_000), "2000-02-29 00:00:00.000");
        assert_eq!(timestamp(1_714_564_800_123), "2024-05-01 12:00:00.123");
    }

    #[test]
    fn counts_and_durations_read_well() {
        assert_eq!(count(0), "0");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(duration(Duration::from_millis(340)), "340 ms");
        assert_eq!(duration(Duration::from_millis(1240)), "1.2 s");
        assert_eq!(duration(Duration::from_secs(185)), "3 min 5 s");
    }

    #[test]
    fn tables_align() {
        let t = table(
            &["A", "LONGER"],
            &[
                vec!["xyz".into(), "1".into()],
                vec!["q".into(), "22".into()],
            ],
        );
        assert_eq!(t, "A    LONGER\nxyz  1\nq    22");
    }
}
