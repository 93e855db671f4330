//! ZIPs built here byte by byte, in each layout the reader must take or refuse.

use super::*;
use flate2::Compression;
use flate2::write::DeflateEncoder;
use std::io::Write;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Layout {
    Stored,
    Deflated,
    /// Deflated, sizes and CRC in a data descriptor after the data (with its signature).
    DeflatedDescriptor,
    /// Deflated, sizes in a ZIP64 extra field.
    DeflatedZip64,
}

fn crc(data: &[u8]) -> u32 {
    let mut c = Crc::new();
    c.update(data);
    c.sum()
}

/// A ZIP of `entries` in `layout`.
fn build(entries: &[(&str, &[u8])], layout: Layout) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in entries {
        let offset = out.len() as u32;
        let body = if layout == Layout::Stored {
            data.to_vec()
        } else {
            let mut e = DeflateEncoder::new(Vec::new(), Compression::default());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        };
        let method: u16 = if layout == Layout::Stored { 0 } else { 8 };
        let flags: u16 = if layout == Layout::DeflatedDescriptor {
            8
        } else {
            0
        };
        let (c, csize, usize_) = match layout {
            Layout::DeflatedDescriptor => (0, 0, 0),
            Layout::DeflatedZip64 => (crc(data), MAX32, MAX32),
            _ => (crc(data), body.len() as u32, data.len() as u32),
        };
        let mut extra = Vec::new();
        if layout == Layout::DeflatedZip64 {
            extra.extend_from_slice(&1u16.to_le_bytes());
            extra.extend_from_slice(&16u16.to_le_bytes());
            extra.extend_from_slice(&(data.len() as u64).to_le_bytes());
            extra.extend_from_slice(&(body.len() as u64).to_le_bytes());
        }
        out.extend_from_slice(&LOCAL.to_le_bytes());
        for v in [20u16, flags, method, 0, 0] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for v in [c, csize, usize_] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(&(extra.len() as u16).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&extra);
        out.extend_from_slice(&body);
        if layout == Layout::DeflatedDescriptor {
            out.extend_from_slice(&DESCRIPTOR.to_le_bytes());
            for v in [crc(data), body.len() as u32, data.len() as u32] {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        central.extend_from_slice(&CENTRAL.to_le_bytes());
        for v in [20u16, 20, flags, method, 0, 0] {
            central.extend_from_slice(&v.to_le_bytes());
        }
        for v in [crc(data), body.len() as u32, data.len() as u32] {
            central.extend_from_slice(&v.to_le_bytes());
        }
        for v in [name.len() as u16, 0, 0, 0, 0] {
            central.extend_from_slice(&v.to_le_bytes());
        }
        central.extend_from_slice(&0u32.to_le_bytes());
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let at = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(&END.to_le_bytes());
    for v in [0u16, 0, entries.len() as u16, entries.len() as u16] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&at.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

const LOG: &[u8] = b"07:49:12 Migrator Export started\n07:49:20 Device export completed.\n";
const USERS: &[u8] = b"[\n  {\"username\": \"alice\", \"libraries\": [{\"id\": \"a,b\"}]},\n  {\"username\": \"b]o\\\"b\"},\n  {\"username\": \"kids\"}\n]\n";

fn export(layout: Layout) -> Vec<u8> {
    let big = b"{\"played\":true},".repeat(20_000);
    build(
        &[
            ("export.log", LOG),
            ("users_basic.json", USERS),
            ("watch_history/alice.json", &big),
            ("devices.json", b""),
        ],
        layout,
    )
}

/// A reader that hands out `piece` bytes at a time, as the channel does.
struct Pieces<'a>(&'a [u8], usize);

impl Read for Pieces<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.0.len().min(self.1).min(buf.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

#[test]
fn every_layout_the_plugin_and_the_simulator_write_is_read_whole() {
    let mut log_hash = [0u8; 32];
    log_hash.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, LOG).as_ref());
    for layout in [
        Layout::Stored,
        Layout::Deflated,
        Layout::DeflatedDescriptor,
        Layout::DeflatedZip64,
    ] {
        let zip = export(layout);
        for piece in [1, 7, 4096, usize::MAX] {
            let facts = inspect(Pieces(&zip, piece)).unwrap();
            assert_eq!(facts.entries, 4);
            assert_eq!(
                facts.content_bytes,
                (LOG.len() + USERS.len() + 16 * 20_000) as u64
            );
            assert_eq!(facts.export_log_sha256, Some(log_hash));
            assert_eq!(facts.users, Some(Ok(3)));
        }
    }
}

#[test]
fn the_simulators_zip_is_read() {
    use crate::sim::bulk::Bulk;
    use crate::sim::zip::{ZipEntry, zip, zip_deflated};
    let entry = |name: &str, text: &[u8]| {
        let mut content = Bulk::new();
        content.bytes(text.to_vec());
        ZipEntry {
            name: name.into(),
            content,
        }
    };
    let entries = [entry("export.log", LOG), entry("users_basic.json", USERS)];
    let at = chrono::NaiveDateTime::default();
    for bulk in [zip(&entries, at), zip_deflated(&entries, at)] {
        let bytes = bulk.unwrap().to_vec();
        let facts = inspect(&bytes[..]).unwrap();
        assert_eq!((facts.entries, facts.users), (2, Some(Ok(3))));
        assert_eq!(facts.content_bytes, (LOG.len() + USERS.len()) as u64);
    }
}

#[test]
fn what_is_not_a_whole_zip_is_refused_with_the_reason() {
    let good = export(Layout::Deflated);
    let stored = export(Layout::Stored);
    let mut flipped = stored.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x20;
    let mut trailing = good.clone();
    trailing.extend_from_slice(b"junk");
    let descriptor_stored = {
        let mut z = build(&[("export.log", LOG)], Layout::Stored);
        z[6] = 8; // the data-descriptor flag on a stored entry
        z
    };
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (Vec::new(), "it is empty"),
        (
            b"<html>503</html>".to_vec(),
            "where a file header or the central directory should be",
        ),
        (
            good[..good.len() / 2].to_vec(),
            "has damaged deflate data (incomplete",
        ),
        (
            stored[..stored.len() / 2].to_vec(),
            "it ends inside an entry",
        ),
        (good[..good.len() - 10].to_vec(), "it ends"),
        (flipped, "is damaged: its CRC-32 is"),
        (trailing, "bytes follow its end record"),
        (descriptor_stored, "cannot be read as a stream"),
    ];
    for (bytes, want) in cases {
        let e = inspect(&bytes[..]).unwrap_err();
        assert!(
            matches!(e, ZipProblem::Format(_)) && e.to_string().contains(want),
            "{want:?}: {e}"
        );
        assert!(
            e.to_string().starts_with("it is not a readable ZIP: "),
            "{e}"
        );
    }
}

#[test]
fn a_failing_stream_is_its_own_error_not_the_zips() {
    struct Broken(usize);
    impl Read for Broken {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0 == 0 {
                return Err(io::Error::other("the disk is gone"));
            }
            let n = self.0.min(buf.len());
            buf[..n].fill(0x50);
            self.0 -= n;
            Ok(n)
        }
    }
    let e = inspect(Broken(2)).unwrap_err();
    assert!(
        matches!(&e, ZipProblem::Read(io) if io.to_string() == "the disk is gone"),
        "{e:?}"
    );
}

#[test]
fn users_are_counted_from_the_top_level_array_only() {
    let count = |text: &str| {
        let mut c = ArrayCounter::default();
        for b in text.as_bytes().chunks(3) {
            c.feed(b);
        }
        c.finish()
    };
    assert_eq!(count("[]"), Ok(0));
    assert_eq!(count(" \n[ ]\n"), Ok(0));
    assert_eq!(
        count("\u{feff}[{\"a\":[1,2,{\"b\":\"],[\"}]}, 3, \"x\"]"),
        Ok(3)
    );
    assert_eq!(count("[1,2"), Err("its array is not closed".into()));
    assert_eq!(
        count("{\"Users\":[]}"),
        Err("it is not a JSON array".into())
    );
    assert!(
        count("[1] [2]")
            .unwrap_err()
            .contains("something follows its array")
    );
}
