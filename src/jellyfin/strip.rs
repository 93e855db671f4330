//! Dropping one huge string field from a JSON body while it streams in.
//!
//! The Migrator plugin's configuration carries `LastExportZipBase64`: the whole last export
//! (with password hashes and device tokens) as base64, easily hundreds of megabytes. A run
//! needs four small fields beside it. Buffering the body to decode it would cost the
//! export's size in memory per server, and keeping it at all risks it reaching a log. So
//! the bytes of that one value are skipped as they arrive and replaced by `""`: memory stays
//! bounded by the rest of the document, and the secret content never exists in our memory
//! as a whole.

/// A streaming filter over chunks of a JSON document that blanks one string field.
pub struct FieldStripper {
    /// `"Name"` with its quotes: what starts a match.
    needle: Vec<u8>,
    state: State,
    /// How many bytes of the needle have matched so far (the match may span chunks).
    matched: usize,
    /// Bytes skipped so far (the value's size, for callers that want to know).
    pub skipped: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    /// Copying bytes, looking for the field name.
    Scan,
    /// Inside some other string: the name can't start here (a value could contain it).
    OtherString { escaped: bool },
    /// After the field's name: expecting white space, then `:`.
    BeforeColon,
    /// After the `:`: expecting white space, then the value's opening quote.
    BeforeValue,
    /// Inside the value: dropping bytes until the closing quote.
    Skipping { escaped: bool },
}

impl FieldStripper {
    pub fn new(field: &str) -> Self {
        FieldStripper {
            needle: format!("\"{field}\"").into_bytes(),
            state: State::Scan,
            matched: 0,
            skipped: 0,
        }
    }

    /// Feed one chunk; the kept bytes are appended to `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        let mut i = 0;
        while i < chunk.len() {
            if self.state == (State::Skipping { escaped: false }) {
                // The value is megabytes of base64: jump to the next quote or backslash
                // instead of stepping the state machine through every byte.
                match chunk[i..].iter().position(|&c| c == b'"' || c == b'\\') {
                    None => {
                        self.skipped += (chunk.len() - i) as u64;
                        return;
                    }
                    Some(p) => {
                        self.skipped += p as u64;
                        i += p;
                    }
                }
            }
            let b = chunk[i];
            i += 1;
            match self.state {
                State::Scan => {
                    out.push(b);
                    if b == self.needle[self.matched] {
                        self.matched += 1;
                        if self.matched == self.needle.len() {
                            self.matched = 0;
                            self.state = State::BeforeColon;
                        }
                    } else if self.matched > 0 {
                        // The name was not complete: this quote-delimited token is some
                        // other string (a name or a value); skip to its end.
                        self.matched = 0;
                        self.state = if b == b'"' {
                            // `""` closed an empty string; `"x"` ended at this quote:
                            // either way a new token may start after it.
                            State::Scan
                        } else {
                            State::OtherString {
                                escaped: b == b'\\',
                            }
                        };
                    } else if b == b'"' {
                        self.matched = 1;
                    }
                }
                State::OtherString { escaped } => {
                    out.push(b);
                    self.state = match (escaped, b) {
                        (true, _) => State::OtherString { escaped: false },
                        (false, b'\\') => State::OtherString { escaped: true },
                        (false, b'"') => State::Scan,
                        _ => State::OtherString { escaped: false },
                    };
                }
                State::BeforeColon => {
                    out.push(b);
                    if b == b':' {
                        self.state = State::BeforeValue;
                    } else if !b.is_ascii_whitespace() {
                        // The name was a value (`["LastExportZipBase64", …]`); carry on.
                        self.state = State::Scan;
                    }
                }
                State::BeforeValue => {
                    if b == b'"' {
                        out.extend_from_slice(b"\"\"");
                        self.state = State::Skipping { escaped: false };
                    } else {
                        out.push(b);
                        if !b.is_ascii_whitespace() {
                            // null or a number: nothing to strip.
                            self.state = State::Scan;
                        }
                    }
                }
                State::Skipping { escaped } => {
                    self.state = match (escaped, b) {
                        (true, _) => State::Skipping { escaped: false },
                        (false, b'\\') => State::Skipping { escaped: true },
                        (false, b'"') => State::Scan,
                        _ => State::Skipping { escaped: false },
                    };
                    if self.state != State::Scan {
                        self.skipped += 1;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strip(input: &str, chunk: usize) -> String {
        let mut s = FieldStripper::new("LastExportZipBase64");
        let mut out = Vec::new();
        for c in input.as_bytes().chunks(chunk.max(1)) {
            s.feed(c, &mut out);
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn blanks_the_field_whatever_the_chunking() {
        let input = r#"{"Mode":"Export","LastExportZipBase64" : "UEsDBBQAAAAIAA==","LastExportLog":"INFO: ok"}"#;
        let want = r#"{"Mode":"Export","LastExportZipBase64" : "","LastExportLog":"INFO: ok"}"#;
        for chunk in 1..input.len() {
            assert_eq!(strip(input, chunk), want, "chunk size {chunk}");
        }
    }

    #[test]
    fn leaves_the_name_alone_inside_other_strings() {
        let input = r#"{"LastExportLog":"wrote \"LastExportZipBase64\": \"x\"","LastExportZipBase64":"QUJD"}"#;
        let want =
            r#"{"LastExportLog":"wrote \"LastExportZipBase64\": \"x\"","LastExportZipBase64":""}"#;
        assert_eq!(strip(input, 3), want);
        serde_json::from_str::<serde_json::Value>(&strip(input, 3)).unwrap();
    }

    #[test]
    fn null_and_absent_values_pass_through() {
        let input = r#"{"LastExportZipBase64":null,"A":"b"}"#;
        assert_eq!(strip(input, 2), input);
        let input = r#"{"A":"","B":"LastExportZipBase64"}"#;
        assert_eq!(strip(input, 1), input);
    }
}
