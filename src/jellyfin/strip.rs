//! Dropping the huge base64 fields from a JSON body while it streams in.
//!
//! The Migrator plugin's configuration carries `LastExportZipBase64` (the whole last
//! export, with password hashes and device tokens) and `LastImportZipBase64` (any ZIP ever
//! uploaded on its Import tab; nothing clears it): each easily hundreds of megabytes. A run
//! needs a few small fields beside them. Buffering the body to decode it would cost their
//! size in memory per server, and keeping them at all risks them reaching a log. So the
//! string value of every member whose name ends in `ZipBase64` (today's two and any later
//! one) is skipped as it arrives and replaced by `""`: memory stays bounded by the rest of
//! the document, and the secret content never exists in our memory as a whole.
//!
//! The filter is a small JSON tokenizer: it follows strings (with their escapes) so a name
//! inside some other string is never taken for a member, and it only strips a string that
//! is followed by `:` (a member name) and whose value is a string. Anything that is not
//! JSON passes through for the decoder to refuse. Names are matched on their raw bytes:
//! one spelled with escapes (`"LastExport\u005aipBase64"`, which Jellyfin never writes) is
//! kept, and then counts against the caller's size limit.
//!
//! One member can be *captured* instead of only dropped ([`ZipStripper::capturing`]): the
//! raw characters of its value (escapes as written) are handed to the caller as they pass,
//! which is how the archive receives `LastExportZipBase64` without the document, or the
//! ZIP, ever being held whole.

/// What marks a member to strip: the end of its name.
pub const SUFFIX: &[u8] = b"ZipBase64";
/// The longest name remembered (for [`ZipStripper::skipped_fields`]); longer ones are
/// matched on their end only.
const NAME_KEEP: usize = 64;

/// A streaming filter over chunks of a JSON document that blanks every `*ZipBase64` string.
#[derive(Debug, Default)]
pub struct ZipStripper {
    state: State,
    /// The last bytes of the string being read (at most [`NAME_KEEP`]).
    name: Vec<u8>,
    /// The string being read is longer than `name` holds.
    name_cut: bool,
    /// Bytes skipped so far, over all fields.
    pub skipped: u64,
    /// Each stripped field's name and the bytes of its value skipped.
    fields: Vec<(String, u64)>,
    /// The exact name of the member whose value is captured, if any.
    capture: Option<&'static [u8]>,
    /// The value being skipped is the captured member's.
    capturing_now: bool,
    /// How many times the captured member was met (a second one is not captured).
    captures: u32,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
enum State {
    /// Between tokens, copying.
    #[default]
    Scan,
    /// Inside a string that could be a member name.
    InString { escaped: bool },
    /// After a string ending in the suffix: white space, then `:` makes it a name.
    BeforeColon,
    /// After the `:`: white space, then the value's opening quote.
    BeforeValue,
    /// Inside the value: dropping bytes until the closing quote.
    Skipping { escaped: bool },
}

impl ZipStripper {
    pub fn new() -> Self {
        ZipStripper::default()
    }

    /// A stripper that also hands out the value of the member named exactly `name`
    /// (its first occurrence) through [`feed_capturing`](Self::feed_capturing).
    pub fn capturing(name: &'static str) -> Self {
        ZipStripper {
            capture: Some(name.as_bytes()),
            ..ZipStripper::default()
        }
    }

    /// The fields stripped so far, with the bytes skipped of each.
    pub fn skipped_fields(&self) -> &[(String, u64)] {
        &self.fields
    }

    /// How many times the captured member was met so far (more than once: only the first
    /// was captured).
    pub fn captures(&self) -> u32 {
        self.captures
    }

    /// Feed one chunk; the kept bytes are appended to `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        self.feed_into(chunk, out, None);
    }

    /// [`feed`](Self::feed), appending the raw characters of the captured member's value
    /// (as written between its quotes, escapes included) to `captured`.
    pub fn feed_capturing(&mut self, chunk: &[u8], out: &mut Vec<u8>, captured: &mut Vec<u8>) {
        self.feed_into(chunk, out, Some(captured));
    }

    fn feed_into(&mut self, chunk: &[u8], out: &mut Vec<u8>, mut captured: Option<&mut Vec<u8>>) {
        let mut i = 0;
        while i < chunk.len() {
            i += match self.state {
                State::Skipping { escaped: false } => {
                    let n = self.skip_run(&chunk[i..]);
                    if self.capturing_now
                        && let Some(c) = captured.as_deref_mut()
                    {
                        c.extend_from_slice(&chunk[i..i + n]);
                    }
                    n
                }
                State::InString { escaped: false } => self.string_run(&chunk[i..], out),
                _ => 0,
            };
            if i >= chunk.len() {
                return;
            }
            let b = chunk[i];
            i += 1;
            let capturing = self.capturing_now;
            self.step(b, out);
            // A byte of the value itself (an escape), not its closing quote.
            if capturing
                && matches!(self.state, State::Skipping { .. })
                && let Some(c) = captured.as_deref_mut()
            {
                c.push(b);
            }
        }
    }

    /// Inside a skipped value: jump to the next quote or backslash (the value is
    /// megabytes of base64). Returns the bytes passed over.
    fn skip_run(&mut self, rest: &[u8]) -> usize {
        let n = rest
            .iter()
            .position(|&c| c == b'"' || c == b'\\')
            .unwrap_or(rest.len());
        self.skipped += n as u64;
        if let Some(f) = self.fields.last_mut() {
            f.1 += n as u64;
        }
        n
    }

    /// Inside a kept string: copy up to the next quote or backslash, remembering its end.
    fn string_run(&mut self, rest: &[u8], out: &mut Vec<u8>) -> usize {
        let n = rest
            .iter()
            .position(|&c| c == b'"' || c == b'\\')
            .unwrap_or(rest.len());
        out.extend_from_slice(&rest[..n]);
        self.remember(&rest[..n]);
        n
    }

    fn remember(&mut self, bytes: &[u8]) {
        self.name.extend_from_slice(bytes);
        if self.name.len() > NAME_KEEP {
            let cut = self.name.len() - NAME_KEEP;
            self.name.drain(..cut);
            self.name_cut = true;
        }
    }

    fn step(&mut self, b: u8, out: &mut Vec<u8>) {
        match self.state {
            State::Scan => {
                out.push(b);
                if b == b'"' {
                    self.name.clear();
                    self.name_cut = false;
                    self.state = State::InString { escaped: false };
                }
            }
            State::InString { escaped } => {
                out.push(b);
                self.state = match (escaped, b) {
                    (false, b'"') if self.name.ends_with(SUFFIX) => State::BeforeColon,
                    (false, b'"') => State::Scan,
                    (false, b'\\') => State::InString { escaped: true },
                    _ => State::InString { escaped: false },
                };
                if self.state != State::BeforeColon {
                    self.remember(&[b]);
                }
            }
            State::BeforeColon => {
                if b == b':' {
                    out.push(b);
                    self.state = State::BeforeValue;
                } else if b.is_ascii_whitespace() {
                    out.push(b);
                } else {
                    // It was a value (`["LastExportZipBase64", …]`): look at this byte again.
                    self.state = State::Scan;
                    self.step(b, out);
                }
            }
            State::BeforeValue => {
                if b == b'"' {
                    out.extend_from_slice(b"\"\"");
                    let name = String::from_utf8_lossy(&self.name).into_owned();
                    let name = if self.name_cut {
                        format!("…{name}")
                    } else {
                        name
                    };
                    self.fields.push((name, 0));
                    if self.capture == Some(&self.name[..]) && !self.name_cut {
                        self.captures += 1;
                        self.capturing_now = self.captures == 1;
                    }
                    self.state = State::Skipping { escaped: false };
                } else if b.is_ascii_whitespace() {
                    out.push(b);
                } else {
                    // null, a number, an object...: nothing to strip; read it normally.
                    self.state = State::Scan;
                    self.step(b, out);
                }
            }
            State::Skipping { escaped } => {
                self.state = match (escaped, b) {
                    (false, b'"') => {
                        self.capturing_now = false;
                        State::Scan
                    }
                    (false, b'\\') => State::Skipping { escaped: true },
                    _ => State::Skipping { escaped: false },
                };
                if self.state != State::Scan {
                    self.skipped += 1;
                    if let Some(f) = self.fields.last_mut() {
                        f.1 += 1;
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
        let mut s = ZipStripper::new();
        let mut out = Vec::new();
        for c in input.as_bytes().chunks(chunk.max(1)) {
            s.feed(c, &mut out);
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn blanks_every_zip_field_whatever_the_chunking() {
        let input = r#"{"Mode":"Export","LastExportZipBase64" : "UEsDBBQAAAAIAA==","LastExportLog":"06:49:12 Migrator Export started","LastImportZipBase64":"UEsDBA\/\\==","FutureZipBase64":"QQ=="}"#;
        let want = r#"{"Mode":"Export","LastExportZipBase64" : "","LastExportLog":"06:49:12 Migrator Export started","LastImportZipBase64":"","FutureZipBase64":""}"#;
        for chunk in 1..input.len() {
            assert_eq!(strip(input, chunk), want, "chunk size {chunk}");
        }
        let mut s = ZipStripper::new();
        s.feed(input.as_bytes(), &mut Vec::new());
        assert_eq!(
            s.skipped_fields(),
            [
                ("LastExportZipBase64".to_owned(), 16),
                ("LastImportZipBase64".to_owned(), 12),
                ("FutureZipBase64".to_owned(), 4)
            ]
        );
        assert_eq!(s.skipped, 32);
    }

    #[test]
    fn captures_the_first_value_of_one_member_raw_however_it_is_cut() {
        let input = r#"{"LastExportLog":"LastExportZipBase64","LastExportZipBase64":"UEsD\u002B\/w==","LastImportZipBase64":"QQ==","X":{"LastExportZipBase64":"QUJD"}}"#;
        let want = r#"{"LastExportLog":"LastExportZipBase64","LastExportZipBase64":"","LastImportZipBase64":"","X":{"LastExportZipBase64":""}}"#;
        for chunk in 1..input.len() {
            let mut s = ZipStripper::capturing("LastExportZipBase64");
            let (mut out, mut captured) = (Vec::new(), Vec::new());
            for c in input.as_bytes().chunks(chunk) {
                s.feed_capturing(c, &mut out, &mut captured);
            }
            assert_eq!(captured, br"UEsD\u002B\/w==", "chunk size {chunk}");
            assert_eq!(String::from_utf8(out).unwrap(), want);
            assert_eq!(s.captures(), 2, "the second one is counted, not captured");
        }
    }

    #[test]
    fn leaves_the_name_alone_inside_other_strings() {
        let input = r#"{"LastExportLog":"wrote \"LastExportZipBase64\": \"x\"","LastImportAnalysisJson":"{\"LastImportZipBase64\":\"y\"}","LastExportZipBase64":"QUJD"}"#;
        let want = r#"{"LastExportLog":"wrote \"LastExportZipBase64\": \"x\"","LastImportAnalysisJson":"{\"LastImportZipBase64\":\"y\"}","LastExportZipBase64":""}"#;
        for chunk in [1, 2, 3, 7, 500] {
            assert_eq!(strip(input, chunk), want, "chunk size {chunk}");
        }
        serde_json::from_str::<serde_json::Value>(&strip(input, 3)).unwrap();
    }

    #[test]
    fn values_that_are_not_strings_and_names_that_are_values_pass_through() {
        for input in [
            r#"{"LastExportZipBase64":null,"A":"b"}"#,
            r#"{"A":"","B":"LastExportZipBase64"}"#,
            r#"["LastExportZipBase64","x"]"#,
            r#"{"LastExportZipBase64" :{"a":"b"}}"#,
            r#"{"LastExportZipBase64":12}"#,
            r#"{"NotAZip":"x","ZipBase64X":"y"}"#,
        ] {
            assert_eq!(strip(input, 2), input);
        }
    }

    #[test]
    fn long_strings_and_broken_input_never_panic() {
        let long = format!(r#"{{"{}ZipBase64":"abc"}}"#, "N".repeat(200));
        let out = strip(&long, 5);
        assert!(out.ends_with(r#"ZipBase64":""}"#), "{out}");
        for junk in [
            "\"",
            "\"\\",
            "{\"aZipBase64\":",
            "{\"aZipBase64\"   ",
            "\u{0}\"ZipBase64\":\"\\",
        ] {
            for chunk in 1..4 {
                let _ = strip(junk, chunk);
            }
        }
    }
}
