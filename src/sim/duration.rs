//! Durations as scenario files write them: humantime strings (`"250ms"`, `"10s"`,
//! `"1h 5m"`), read for the server config's fields and a latency fault's length, with an
//! error that says what to write instead.

use serde::Deserialize;
use std::time::Duration;

/// `s` as a duration, or a sentence naming it and showing the accepted forms.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("invalid duration {s:?}: {e} (write e.g. \"250ms\", \"10s\", \"2m\")"))
}

/// Serde's `deserialize_with` for a humantime string.
pub(crate) fn duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

/// The same for an optional field: present means `Some`.
pub(crate) fn opt_duration<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}
