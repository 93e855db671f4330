//! Timezones: IANA names as a config gives them (with suggestions for a misspelt one), and
//! the system's own zone (`$TZ`, `/etc/localtime`, `/etc/timezone`) for a server whose
//! config names none.
//!
//! This is the part of timezones that reads the system and talks to users; the schedule
//! maths that uses a zone is in [`crate::schedule`], which reads nothing.

use std::path::Path;

use chrono_tz::Tz;

/// Parse an IANA timezone name. The error suggests the closest valid names.
pub fn parse_timezone(name: &str) -> Result<Tz, String> {
    let trimmed = name.trim();
    if trimmed.is_empty() {
        return Err(
            "timezone name is empty; expected an IANA name such as Europe/Berlin or UTC"
                .to_string(),
        );
    }
    if let Ok(tz) = trimmed.parse::<Tz>() {
        return Ok(tz);
    }
    let suggestions = timezone_suggestions(trimmed);
    Err(match suggestions.as_slice() {
        [] => format!(
            "unknown timezone \"{trimmed}\"; expected an IANA name such as Europe/Berlin, America/New_York or UTC"
        ),
        [only] => format!("unknown timezone \"{trimmed}\"; did you mean {only}?"),
        [init @ .., last] => format!(
            "unknown timezone \"{trimmed}\"; did you mean {} or {last}?",
            init.join(", ")
        ),
    })
}

/// Up to three valid names close to `name`: same name in another case; else the same city
/// ("berlin" → Europe/Berlin); else the smallest edit distance, if it is small.
fn timezone_suggestions(name: &str) -> Vec<&'static str> {
    const MAX: usize = 3;
    let names = || chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name());
    let same_case: Vec<_> = names().filter(|n| n.eq_ignore_ascii_case(name)).collect();
    if !same_case.is_empty() {
        return same_case.into_iter().take(MAX).collect();
    }
    if !name.contains('/') {
        let city = name.replace(' ', "_");
        let same_city: Vec<_> = names()
            .filter(|n| {
                n.rsplit('/')
                    .next()
                    .is_some_and(|c| c.eq_ignore_ascii_case(&city))
            })
            .collect();
        if !same_city.is_empty() {
            return same_city.into_iter().take(MAX).collect();
        }
    }
    let wanted = name.to_lowercase();
    let wanted_len = wanted.chars().count();
    let limit = (wanted_len / 4).clamp(1, 3);
    // The distance is at least the difference in length, so most names need no
    // computing; without this a 7 MB name took minutes (quadratic in its length).
    let mut scored: Vec<(usize, &'static str)> = names()
        .filter(|n| n.chars().count().abs_diff(wanted_len) <= limit)
        .map(|n| (strsim::levenshtein(&wanted, &n.to_lowercase()), n))
        .filter(|(d, _)| *d <= limit)
        .collect();
    scored.sort();
    let best = scored.first().map_or(0, |(d, _)| *d);
    scored
        .into_iter()
        .take_while(|(d, _)| *d == best)
        .take(MAX)
        .map(|(_, n)| n)
        .collect()
}

/// The system's zone: `$TZ`, else `/etc/localtime`'s symlink target, else `/etc/timezone`,
/// else UTC. See [`system_timezone_from`].
pub fn system_timezone() -> Tz {
    let env = std::env::var("TZ").ok();
    system_timezone_from(
        env.as_deref(),
        Path::new("/etc/localtime"),
        Path::new("/etc/timezone"),
    )
}

/// The zone named by `tz_env` (the value of `$TZ`; a leading `:` and a
/// `…/zoneinfo/Area/City` path are accepted) if it names an IANA zone; else the target of
/// the `localtime` symlink (`…/zoneinfo/Area/City`); else the first line of
/// `timezone_file`; else UTC. A POSIX rule such as `CET-1CEST` is not an IANA name and
/// falls through.
pub fn system_timezone_from(tz_env: Option<&str>, localtime: &Path, timezone_file: &Path) -> Tz {
    if let Some(value) = tz_env {
        let value = value.trim();
        let value = value.strip_prefix(':').unwrap_or(value);
        if let Some(tz) = zone_from_name_or_path(value) {
            return tz;
        }
    }
    if let Ok(target) = std::fs::read_link(localtime)
        && let Some(tz) = zone_from_name_or_path(&target.to_string_lossy())
    {
        return tz;
    }
    if let Ok(content) = std::fs::read_to_string(timezone_file)
        && let Some(line) = content
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
        && let Ok(tz) = line.parse::<Tz>()
    {
        return tz;
    }
    Tz::UTC
}

fn zone_from_name_or_path(value: &str) -> Option<Tz> {
    let name = match value.rfind("zoneinfo/") {
        Some(i) => {
            let rest = &value[i + "zoneinfo/".len()..];
            // Some systems link into the `posix/` or `right/` copies of the database.
            rest.strip_prefix("posix/")
                .or_else(|| rest.strip_prefix("right/"))
                .unwrap_or(rest)
        }
        None => value,
    };
    name.parse::<Tz>().ok()
}

#[cfg(test)]
mod tests {
    // The suggestions' thresholds were tuned on plain Levenshtein distance counted in
    // characters: this pins that the crate counts the same way.
    use strsim::levenshtein;

    #[test]
    fn levenshtein_counts_edits() {
        assert_eq!(levenshtein("", ""), 0);
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(levenshtein("europe/berln", "europe/berlin"), 1);
    }
}
