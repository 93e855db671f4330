//! Knowing when a JSON object streaming in has shown every member a caller needs, so the
//! rest of it need not be read.
//!
//! The Migrator's configuration is mostly its ZIP fields (megabytes), and a run needs a
//! few small members: the preflight `Mode` and the shape fields (a few hundred bytes in),
//! the verification the export's log, path and time (still before the ZIPs). Jellyfin
//! writes the properties in their declaration order, but nothing here relies on it: the
//! watcher follows the document's top-level members in whatever order they come and says
//! where the document can be cut once each wanted one has ended. A reordering, an escaped
//! name (compared raw, so never matched) or a missing member only costs reading on to
//! the end, which is what happened before.
//!
//! It is a small tokenizer over the bytes the caller keeps (after [`super::strip`]): it
//! follows strings and their escapes, counts nesting, and reads a member name only where
//! one can stand (at the top level, after `{` or `,`). Anything that is not a JSON object
//! turns it off: the caller then reads everything and the decoder says what is wrong.

/// The longest member name compared; longer names are never wanted.
const NAME_MAX: usize = 64;

/// Watches a JSON object's top-level members go by; see the module documentation.
#[derive(Debug)]
pub struct MemberWatch {
    wanted: &'static [&'static str],
    /// `seen[i]`: `wanted[i]` has ended.
    seen: Vec<bool>,
    /// Bytes fed so far (positions are counted from the document's start).
    fed: usize,
    /// Nesting depth: 1 inside the top-level object.
    depth: u32,
    in_string: bool,
    escaped: bool,
    /// At the top level, the next string is a member name.
    name_next: bool,
    /// The string being read is a member name.
    reading_name: bool,
    name: Vec<u8>,
    /// The name can still match (no escape in it, not too long).
    name_plain: bool,
    /// The member whose value is being read is `wanted[i]`.
    current: Option<usize>,
    /// Not a JSON object, or it has ended: never says to stop.
    off: bool,
}

impl MemberWatch {
    pub fn new(wanted: &'static [&'static str]) -> Self {
        MemberWatch {
            wanted,
            seen: vec![false; wanted.len()],
            fed: 0,
            depth: 0,
            in_string: false,
            escaped: false,
            name_next: false,
            reading_name: false,
            name: Vec::new(),
            name_plain: false,
            current: None,
            off: false,
        }
    }

    /// Feed the next bytes of the document. Returns `Some(n)` once every wanted member
    /// has ended: the document's first `n` bytes are `{` and whole members (every wanted
    /// one among them), so those bytes followed by `}` are a complete object. Once it has
    /// said so, or turned off, it says nothing more.
    pub fn feed(&mut self, bytes: &[u8]) -> Option<usize> {
        let mut i = 0;
        while i < bytes.len() && !self.off {
            if self.in_string && !self.escaped && !self.reading_name {
                // A value's text (a log can be long): jump to its next quote or backslash.
                i += bytes[i..]
                    .iter()
                    .position(|&b| b == b'"' || b == b'\\')
                    .unwrap_or(bytes.len() - i);
                if i == bytes.len() {
                    break;
                }
            }
            let at = self.fed + i;
            let b = bytes[i];
            i += 1;
            if let Some(end) = self.step(b, at) {
                self.off = true;
                self.fed += i;
                return Some(end);
            }
        }
        self.fed += bytes.len();
        None
    }

    /// True once every wanted member has ended (what [`feed`](Self::feed) reported).
    pub fn complete(&self) -> bool {
        self.seen.iter().all(|s| *s)
    }

    fn step(&mut self, b: u8, at: usize) -> Option<usize> {
        if self.in_string {
            self.string_byte(b);
            return None;
        }
        match b {
            b'"' => {
                self.in_string = true;
                if self.depth == 1 && self.name_next {
                    self.name_next = false;
                    self.reading_name = true;
                    self.name.clear();
                    self.name_plain = true;
                }
            }
            b'{' if self.depth == 0 => {
                self.depth = 1;
                self.name_next = true;
            }
            // Not an object: let the decoder judge it all.
            _ if self.depth == 0 && !b.is_ascii_whitespace() => self.off = true,
            _ if self.depth == 0 => {}
            b'{' | b'[' => self.depth = self.depth.saturating_add(1),
            b',' if self.depth == 1 => {
                self.name_next = true;
                return self.member_ended(at);
            }
            b'}' | b']' if self.depth == 1 => {
                // The object's end: whatever comes next is not ours to read.
                let end = self.member_ended(at);
                self.off = true;
                return end;
            }
            b'}' | b']' => self.depth -= 1,
            _ => {}
        }
        None
    }

    fn string_byte(&mut self, b: u8) {
        if self.escaped {
            self.escaped = false;
        } else if b == b'\\' {
            self.escaped = true;
            // Names are compared raw: an escaped one never matches.
            self.name_plain = false;
            return;
        } else if b == b'"' {
            self.in_string = false;
            if self.reading_name {
                self.reading_name = false;
                self.current = if self.name_plain {
                    self.wanted.iter().position(|w| w.as_bytes() == self.name)
                } else {
                    None
                };
            }
            return;
        }
        if self.reading_name && self.name_plain {
            if self.name.len() < NAME_MAX {
                self.name.push(b);
            } else {
                self.name_plain = false;
            }
        }
    }

    /// The member before the `,` or `}` at `at` has ended.
    fn member_ended(&mut self, at: usize) -> Option<usize> {
        if let Some(i) = self.current.take() {
            self.seen[i] = true;
        }
        self.complete().then_some(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WANT: &[&str] = &["Mode", "IncludeUsers"];

    /// Feed `doc` in chunks; the cut document (the prefix and `}`), or `None`.
    fn cut(doc: &str, chunk: usize) -> Option<String> {
        let mut w = MemberWatch::new(WANT);
        for c in doc.as_bytes().chunks(chunk.max(1)) {
            if let Some(n) = w.feed(c) {
                return Some(format!("{}}}", &doc[..n]));
            }
        }
        None
    }

    #[test]
    fn cuts_after_the_last_wanted_member_however_it_is_chunked() {
        let doc = r#"{"ExportDirectory":"a,}\"{","Mode":"Export" , "Selected":[{"x":"}"},[]],"IncludeUsers":true,"Log":"long","LastExportZipBase64":""}"#;
        let want = r#"{"ExportDirectory":"a,}\"{","Mode":"Export" , "Selected":[{"x":"}"},[]],"IncludeUsers":true}"#;
        for chunk in 1..doc.len() {
            let got = cut(doc, chunk);
            assert_eq!(got.as_deref(), Some(want), "chunk size {chunk}");
            serde_json::from_str::<serde_json::Value>(want).unwrap();
        }
    }

    #[test]
    fn any_order_and_the_last_member_of_the_object() {
        let doc = r#"{ "IncludeUsers" : false , "A" : {"Mode":"Import"}, "Mode" : null }"#;
        assert_eq!(cut(doc, 3).as_deref(), Some(doc.trim_end()));
    }

    #[test]
    fn never_cuts_without_every_member_or_on_what_is_not_an_object() {
        for doc in [
            r#"{"Mode":"Export","Other":{"IncludeUsers":true}}"#,
            r#"{"Mode":"Export","Include\u0055sers":true,"x":1}"#,
            r#"{"Mode":"Export","IncludeUsers":true"#,
            r#"["Mode","IncludeUsers",1]"#,
            r#""Mode","IncludeUsers","#,
            r#"{"Mode":"Export"}{"IncludeUsers":true,"#,
            "",
        ] {
            for chunk in [1, 2, 5, 100] {
                assert_eq!(cut(doc, chunk), None, "{doc}");
            }
        }
    }

    #[test]
    fn long_and_broken_input_never_panics() {
        let long = format!(r#"{{"{}":1,"Mode":1,"IncludeUsers":2,"#, "N".repeat(500));
        assert!(cut(&long, 7).is_some());
        for junk in ["}}}}", "{]]]]", "{\"\\", "{\"a\":\"\\\"", "{{{{{{"] {
            for chunk in 1..4 {
                let _ = cut(junk, chunk);
            }
        }
    }
}
