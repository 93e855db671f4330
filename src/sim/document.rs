//! [`ConfigDocument`]: the body of `GET /Plugins/{id}/Configuration`, a JSON object
//! written field by field. Its ZIP fields are [`Base64Value`]s: text held when it is up to
//! a megabyte, as the plugin holds it, and made while it is sent when longer, so a
//! configuration holding a 500 MB export is never held whole.

use super::bulk::Base64Value;
use crate::sim::http1::BodySource;
use serde::Serialize;
use std::borrow::Cow;
use std::sync::Arc;

/// One part of a streamed JSON document.
#[derive(Debug)]
enum Part {
    Text(Vec<u8>),
    /// A base64 string's characters (without its quotes).
    Base64(Arc<Base64Value>),
}

/// A JSON object whose big string values are base64 made while it is sent.
#[derive(Debug, Default)]
pub struct ConfigDocument {
    /// The parts up to the last base64 value.
    parts: Vec<Part>,
    /// The text after them, still being written.
    tail: Vec<u8>,
    /// Fields written so far (for the commas).
    fields: usize,
}

impl ConfigDocument {
    /// Raw JSON text.
    fn text(&mut self, s: &str) {
        self.tail.extend_from_slice(s.as_bytes());
    }

    /// `{"name":` or `,"name":`.
    fn name(&mut self, name: &str) {
        let t = &mut self.tail;
        t.push(if self.fields == 0 { b'{' } else { b',' });
        t.push(b'"');
        t.extend_from_slice(name.as_bytes());
        t.extend_from_slice(b"\":");
        self.fields += 1;
    }

    /// A field whose value is written as JSON straight into the text (no `Value` is built:
    /// the simulator writes this document for every configuration read).
    pub(crate) fn field(&mut self, name: &str, value: impl Serialize) -> &mut Self {
        self.name(name);
        // Strings, booleans, numbers and lists of strings: their JSON cannot fail.
        serde_json::to_writer(&mut self.tail, &value)
            .expect("a string, boolean, number or list of strings is always JSON");
        self
    }

    pub(crate) fn optional(&mut self, name: &str, value: Option<impl Serialize>) -> &mut Self {
        if let Some(v) = value {
            self.field(name, v);
        }
        self
    }

    pub(crate) fn zip(&mut self, name: &str, zip: Option<&Arc<Base64Value>>) -> &mut Self {
        if let Some(z) = zip {
            self.name(name);
            self.text("\"");
            self.parts.push(Part::Text(std::mem::take(&mut self.tail)));
            self.parts.push(Part::Base64(z.clone()));
            self.text("\"");
        }
        self
    }

    pub(crate) fn close(&mut self) {
        if self.fields == 0 {
            self.text("{");
        }
        self.text("}");
    }

    /// The whole document (tests and small documents).
    #[cfg(test)]
    pub fn to_vec(&self) -> Vec<u8> {
        self.chunks().flat_map(Cow::into_owned).collect()
    }
}

impl BodySource for ConfigDocument {
    fn size(&self) -> u64 {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => t.len() as u64,
                Part::Base64(b) => b.text_len(),
            })
            .sum::<u64>()
            + self.tail.len() as u64
    }

    fn chunks(&self) -> Box<dyn Iterator<Item = Cow<'_, [u8]>> + Send + '_> {
        Box::new(
            self.parts
                .iter()
                .flat_map(|p| -> Box<dyn Iterator<Item = Cow<'_, [u8]>> + Send + '_> {
                    match p {
                        Part::Text(t) => Box::new(std::iter::once(Cow::Borrowed(&t[..]))),
                        Part::Base64(b) => b.text_chunks(),
                    }
                })
                .chain(std::iter::once(Cow::Borrowed(&self.tail[..])))
                .filter(|c| !c.is_empty()),
        )
    }
}
