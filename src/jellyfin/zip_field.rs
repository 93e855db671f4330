//! The value of `LastExportZipBase64` as it streams in: the raw characters of a JSON string
//! (as [`super::strip::ZipStripper`] captures them) → the ZIP's bytes, a piece at a time.
//!
//! Jellyfin writes the string with System.Text.Json, whose default encoder escapes `+` as
//! `\u002B` (and may escape `/` as `\/`), so JSON escapes are undone first; what remains
//! must be standard padded base64 (what .NET's `Convert.ToBase64String` writes), with
//! the padding only at the very end. A value that is not gives an error naming the
//! character and where it is, so nothing half-decoded is ever taken for a ZIP.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// The base64 characters decoded in one go (a multiple of 4).
const BATCH: usize = 64 * 1024;

/// Why the value is not a base64 string.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("LastExportZipBase64 is not base64: {0}")]
pub struct NotBase64(pub String);

/// A streaming decoder of one JSON-string-encoded base64 value.
#[derive(Debug, Default)]
pub struct Base64Field {
    /// Unescaped base64 characters not decoded yet.
    text: Vec<u8>,
    escape: Escape,
    /// Characters decoded so far (for the position in an error).
    decoded_chars: u64,
    /// Padding was decoded: nothing may follow.
    padded: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Escape {
    #[default]
    None,
    /// After a backslash.
    Backslash,
    /// In `\uXXXX`: the digits read and their value so far.
    Unicode { digits: u8, value: u32 },
}

impl Base64Field {
    pub fn new() -> Self {
        Base64Field::default()
    }

    /// Feed raw characters of the value; the bytes decoded so far are appended to `out`.
    pub fn feed(&mut self, raw: &[u8], out: &mut Vec<u8>) -> Result<(), NotBase64> {
        if self.escape == Escape::None && !raw.contains(&b'\\') {
            self.text.extend_from_slice(raw);
        } else {
            for &b in raw {
                self.unescape(b)?;
            }
        }
        if self.text.len() >= BATCH {
            let whole = self.text.len() / 4 * 4;
            self.decode(whole, out)?;
        }
        Ok(())
    }

    /// The value ended: decode what is left, which must be whole groups of four.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), NotBase64> {
        if self.escape != Escape::None {
            return Err(NotBase64("it ends inside a JSON escape".into()));
        }
        if !self.text.len().is_multiple_of(4) {
            return Err(NotBase64(format!(
                "its length ({} characters) is not a multiple of 4",
                self.decoded_chars + self.text.len() as u64
            )));
        }
        self.decode(self.text.len(), out)
    }

    fn unescape(&mut self, b: u8) -> Result<(), NotBase64> {
        self.escape = match (self.escape, b) {
            (Escape::None, b'\\') => Escape::Backslash,
            (Escape::None, _) => {
                self.text.push(b);
                Escape::None
            }
            (Escape::Backslash, b'u') => Escape::Unicode {
                digits: 0,
                value: 0,
            },
            (Escape::Backslash, b'/' | b'\\' | b'"') => {
                self.text.push(b);
                Escape::None
            }
            (Escape::Backslash, _) => {
                return Err(NotBase64(format!(
                    "it holds the escape \\{} near character {}",
                    char::from(b).escape_default(),
                    self.position()
                )));
            }
            (Escape::Unicode { digits, value }, _) => {
                let digit = char::from(b).to_digit(16).ok_or_else(|| {
                    NotBase64(format!(
                        "a \\u escape near character {} is not followed by four hex digits",
                        self.position()
                    ))
                })?;
                let value = value * 16 + digit;
                if digits < 3 {
                    Escape::Unicode {
                        digits: digits + 1,
                        value,
                    }
                } else {
                    // Only ASCII can be base64; anything else is caught by the decoder.
                    self.text.push(u8::try_from(value).unwrap_or(b'?'));
                    Escape::None
                }
            }
        };
        Ok(())
    }

    fn position(&self) -> u64 {
        self.decoded_chars + self.text.len() as u64
    }

    /// Decode the first `len` characters of `text` (a multiple of 4) into `out`.
    fn decode(&mut self, len: usize, out: &mut Vec<u8>) -> Result<(), NotBase64> {
        if len == 0 {
            return Ok(());
        }
        let text = &self.text[..len];
        let pad = if self.padded {
            Some(0)
        } else {
            text.iter().position(|&c| c == b'=')
        };
        if let Some(p) = pad
            && text[p..].iter().any(|&c| c != b'=')
        {
            return Err(NotBase64(format!(
                "characters follow its padding at character {}",
                self.decoded_chars + p as u64
            )));
        }
        let start = out.len();
        out.resize(start + len / 4 * 3, 0);
        let n = STANDARD
            .decode_slice(&self.text[..len], &mut out[start..])
            .map_err(|e| NotBase64(self.describe(e)))?;
        out.truncate(start + n);
        self.padded = self.text[len - 1] == b'=';
        self.decoded_chars += len as u64;
        self.text.drain(..len);
        Ok(())
    }

    fn describe(&self, e: base64::DecodeSliceError) -> String {
        use base64::DecodeError::*;
        let at = |offset: usize| self.decoded_chars + offset as u64;
        match e {
            base64::DecodeSliceError::DecodeError(InvalidByte(offset, byte)) => format!(
                "character {} is {:?}, which base64 does not use",
                at(offset),
                char::from(byte)
            ),
            base64::DecodeSliceError::DecodeError(InvalidLastSymbol(offset, byte)) => format!(
                "character {} ({:?}) ends the value with bits base64 does not leave set",
                at(offset),
                char::from(byte)
            ),
            base64::DecodeSliceError::DecodeError(InvalidPadding) => {
                "its padding is not where base64 puts it".into()
            }
            other => other.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(raw: &str, piece: usize) -> Result<Vec<u8>, NotBase64> {
        let mut field = Base64Field::new();
        let mut out = Vec::new();
        for chunk in raw.as_bytes().chunks(piece.max(1)) {
            field.feed(chunk, &mut out)?;
        }
        field.finish(&mut out)?;
        Ok(out)
    }

    #[test]
    fn decodes_escaped_base64_however_it_is_cut() {
        // "+" as System.Text.Json writes it, "/" escaped as some encoders do.
        let raw = r"UEsD\u002B\/w\u002b";
        for piece in 1..raw.len() + 1 {
            assert_eq!(
                decode(raw, piece).unwrap(),
                b"PK\x03\xfb\xfc\x3e",
                "{piece}"
            );
        }
        let long: String = "QUJD".repeat(50_000);
        assert_eq!(decode(&long, 7_777).unwrap(), b"ABC".repeat(50_000));
        assert_eq!(decode("", 3).unwrap(), b"");
    }

    #[test]
    fn refuses_what_is_not_base64_saying_where() {
        let cases = [
            ("QUJD QUJ", "character 4 is ' ', which base64 does not use"),
            ("QUJDQQ", "its length (6 characters) is not a multiple of 4"),
            ("QQ==QUJD", "characters follow its padding at character 2"),
            (r"QU\nJD", "it holds the escape \\n near character 2"),
            (r"QU\u00zz", "not followed by four hex digits"),
            (r"QUJD\", "it ends inside a JSON escape"),
            (r"QUJ\u00e9", "character 3 is 'é'"),
        ];
        for (raw, want) in cases {
            for piece in [1, 3, 100] {
                let e = decode(raw, piece).unwrap_err().to_string();
                assert!(e.contains(want), "{raw:?} in pieces of {piece}: {e}");
                assert!(e.starts_with("LastExportZipBase64 is not base64: "), "{e}");
            }
        }
        // Padding split from the end by a batch boundary is still caught.
        let mut field = Base64Field::new();
        let mut out = Vec::new();
        let mut first = "QUJD".repeat(BATCH / 4 - 1);
        first.push_str("QQ==");
        field.feed(first.as_bytes(), &mut out).unwrap();
        let e = field
            .feed(b"QUJD", &mut out)
            .and_then(|()| field.finish(&mut out));
        assert!(e.unwrap_err().0.contains("characters follow its padding"));
    }
}
