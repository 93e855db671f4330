//! The one thing `doctor` reads from a server's certificate: when it expires (`notAfter`).
//!
//! A certificate is DER: `Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version
//! OPTIONAL, serialNumber INTEGER, signature SEQUENCE, issuer SEQUENCE, validity SEQUENCE
//! { notBefore Time, notAfter Time }, ... }, ... }` (RFC 5280, 4.1), where a `Time` is a
//! UTCTime (`YYMMDDHHMMSSZ`, years 1950 to 2049) or a GeneralizedTime
//! (`YYYYMMDDHHMMSSZ`). Walking to it takes a few lines; a full X.509 parser would bring a
//! dozen crates for one date. TLS itself (chain, names, dates) is checked by the HTTP
//! client's rustls: this only says how long is left.

use chrono::{DateTime, NaiveDate, Utc};

/// DER tags met on the way.
const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const VERSION: u8 = 0xa0;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

/// When the certificate stops being valid; `None` when the bytes are not a certificate.
pub fn not_after(der: &[u8]) -> Option<DateTime<Utc>> {
    let (cert, _) = expect(der, SEQUENCE)?;
    let (tbs, _) = expect(cert, SEQUENCE)?;
    let mut rest = tbs;
    if rest.first() == Some(&VERSION) {
        rest = element(rest)?.2;
    }
    rest = expect(rest, INTEGER)?.1; // serialNumber
    rest = expect(rest, SEQUENCE)?.1; // signature
    rest = expect(rest, SEQUENCE)?.1; // issuer
    let (validity, _) = expect(rest, SEQUENCE)?;
    let (_, _, after_not_before) = element(validity)?;
    let (tag, value, _) = element(after_not_before)?;
    let text = std::str::from_utf8(value).ok()?;
    match tag {
        UTC_TIME => {
            let yy: i32 = text.get(..2)?.parse().ok()?;
            let year = if yy >= 50 { 1900 + yy } else { 2000 + yy };
            time(year, text.get(2..)?)
        }
        GENERALIZED_TIME => time(text.get(..4)?.parse().ok()?, text.get(4..)?),
        _ => None,
    }
}

/// `MMDDHHMMSSZ` of the given year.
fn time(year: i32, rest: &str) -> Option<DateTime<Utc>> {
    if rest.len() != 11 || !rest.ends_with('Z') {
        return None;
    }
    let n = |i: usize| rest.get(i..i + 2)?.parse::<u32>().ok();
    NaiveDate::from_ymd_opt(year, n(0)?, n(2)?)?
        .and_hms_opt(n(4)?, n(6)?, n(8)?)
        .map(|t| t.and_utc())
}

/// The element at the start of `input` if it has tag `tag`: its content and what follows.
fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (t, content, rest) = element(input)?;
    (t == tag).then_some((content, rest))
}

/// One DER element: its tag, its content, and the bytes after it.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, input) = input.split_first()?;
    let (&first, mut input) = input.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || input.len() < count {
            return None;
        }
        let (bytes, after) = input.split_at(count);
        input = after;
        bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
    };
    if input.len() < len {
        return None;
    }
    let (content, rest) = input.split_at(len);
    Some((tag, content, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A certificate's skeleton with `validity` as given (a real one has more after it,
    /// which the walk never reaches).
    fn skeleton(validity: &[u8]) -> Vec<u8> {
        fn wrap(tag: u8, content: &[u8]) -> Vec<u8> {
            let mut v = vec![tag];
            if content.len() < 0x80 {
                v.push(content.len() as u8);
            } else {
                v.extend([0x82, (content.len() >> 8) as u8, content.len() as u8]);
            }
            v.extend_from_slice(content);
            v
        }
        let mut tbs = wrap(VERSION, &wrap(INTEGER, &[2]));
        tbs.extend(wrap(INTEGER, &[0x01, 0x02]));
        tbs.extend(wrap(SEQUENCE, &[0x06, 0x01, 0x00]));
        tbs.extend(wrap(SEQUENCE, &[0u8; 200])); // an issuer long enough for a long length
        tbs.extend(wrap(SEQUENCE, validity));
        tbs.extend(wrap(SEQUENCE, &[])); // subject
        wrap(SEQUENCE, &wrap(SEQUENCE, &tbs))
    }

    fn times(before: (u8, &str), after: (u8, &str)) -> Vec<u8> {
        let mut v = vec![before.0, before.1.len() as u8];
        v.extend_from_slice(before.1.as_bytes());
        v.extend([after.0, after.1.len() as u8]);
        v.extend_from_slice(after.1.as_bytes());
        v
    }

    #[test]
    fn utc_and_generalized_times() {
        let cert = skeleton(&times(
            (UTC_TIME, "250101000000Z"),
            (UTC_TIME, "270315123456Z"),
        ));
        assert_eq!(
            not_after(&cert).unwrap().to_rfc3339(),
            "2027-03-15T12:34:56+00:00"
        );
        // UTCTime years 50..99 are the 1900s.
        let cert = skeleton(&times(
            (UTC_TIME, "990101000000Z"),
            (UTC_TIME, "991231235959Z"),
        ));
        assert_eq!(
            not_after(&cert).unwrap().to_rfc3339(),
            "1999-12-31T23:59:59+00:00"
        );
        let cert = skeleton(&times(
            (UTC_TIME, "250101000000Z"),
            (GENERALIZED_TIME, "20610101000000Z"),
        ));
        assert_eq!(
            not_after(&cert).unwrap().to_rfc3339(),
            "2061-01-01T00:00:00+00:00"
        );
    }

    #[test]
    fn anything_else_is_none() {
        assert_eq!(not_after(b""), None);
        assert_eq!(not_after(b"\x30\x05abc"), None);
        let bad_date = skeleton(&times(
            (UTC_TIME, "250101000000Z"),
            (UTC_TIME, "251341000000Z"),
        ));
        assert_eq!(not_after(&bad_date), None);
        let mut cut = skeleton(&times(
            (UTC_TIME, "250101000000Z"),
            (UTC_TIME, "270315123456Z"),
        ));
        cut.truncate(cut.len() - 10);
        assert_eq!(not_after(&cut), None);
    }
}
