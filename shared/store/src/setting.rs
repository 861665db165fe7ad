//! How a setting is written in `pantheon.toml` and in `PANTHEON_*` variables, for the library
//! configurations that declare their settings themselves (`ProberConfig`, `ProjectorConfig`):
//! durations as whole milliseconds (keys ending in `_ms`, where 0 may mean "off"), strings that
//! may arrive as bare numbers, and the error a library gives for a value it cannot use, named
//! by its key.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

/// A setting whose value a library cannot use: the key as the configuration file spells it
/// (`interval_ms`) and what is wrong with the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key} {problem}")]
pub struct InvalidSetting {
    pub key: &'static str,
    pub problem: String,
}

impl InvalidSetting {
    pub fn new(key: &'static str, problem: impl Into<String>) -> Self {
        Self {
            key,
            problem: problem.into(),
        }
    }
}

/// `Err` naming `key` when `value` is below `least` (durations are said in milliseconds, as
/// they are written).
pub fn at_least(key: &'static str, value: Duration, least: Duration) -> Result<(), InvalidSetting> {
    if value < least {
        return Err(InvalidSetting::new(
            key,
            format!("{} is too short (at least {})", in_ms(value), in_ms(least)),
        ));
    }
    Ok(())
}

/// `250ms`, `1.5ms`.
pub fn in_ms(d: Duration) -> String {
    format!("{}ms", d.as_secs_f64() * 1000.0)
}

/// `#[serde(with = "millis")]`: a [`Duration`] as whole milliseconds.
pub mod millis {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(whole_ms(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// `#[serde(with = "millis_or_off")]`: an optional [`Duration`] as whole milliseconds, where 0
/// is `None` (the limit or check is off).
pub mod millis_or_off {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.map_or(0, whole_ms))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let ms = u64::deserialize(d)?;
        Ok((ms > 0).then(|| Duration::from_millis(ms)))
    }
}

/// `#[serde(with = "count_or_off")]`: an optional count, where 0 is `None`.
pub mod count_or_off {
    use super::*;

    pub fn serialize<S: Serializer>(n: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(n.unwrap_or(0))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        let n = u64::deserialize(d)?;
        Ok((n > 0).then_some(n))
    }
}

fn whole_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `#[serde(deserialize_with = "text")]`: a string key that also takes a bare number or
/// boolean (an environment variable such as `PANTHEON_CLUSTER=2024` arrives as a number).
pub fn text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    d.deserialize_any(TextVisitor)
}

/// [`text`], for an optional key.
pub fn opt_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    d.deserialize_any(TextVisitor).map(Some)
}

struct TextVisitor;

impl serde::de::Visitor<'_> for TextVisitor {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<String, E> {
        Ok(v.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_said_in_milliseconds() {
        assert_eq!(in_ms(Duration::from_millis(250)), "250ms");
        assert_eq!(in_ms(Duration::from_micros(1500)), "1.5ms");
        let e = at_least(
            "interval_ms",
            Duration::from_millis(5),
            Duration::from_millis(10),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "interval_ms 5ms is too short (at least 10ms)"
        );
        assert!(at_least("x", Duration::from_millis(10), Duration::from_millis(10)).is_ok());
    }
}
