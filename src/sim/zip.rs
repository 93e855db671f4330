//! A ZIP writer for the simulated plugin's exports: a real, valid archive any reader opens
//! (Python's `zipfile`, `unzip`, .NET's `ZipArchive`), described as a [`Bulk`] so its size
//! costs nothing until it is sent.
//!
//! Entries are *stored* (method 0) with their CRC-32 and sizes in the local header, no data
//! descriptors: the most portable layout, readable front to back by a streaming reader as
//! well as through the central directory. The CRCs come from [`Bulk::crc32`], which
//! combines the CRC of a repeated block in O(log n), so a 500 MB archive is planned in
//! microseconds and streamed in chunks. The real plugin deflates its entries (.NET's
//! `ZipFile.CreateFromDirectory`); stored ones are equally valid and keep the simulated
//! size exactly what a scenario asks for. [`zip_deflated`] writes the plugin's layout
//! instead, for readers that must take both; it compresses for real, so it is for
//! archives of at most [`MAX_DEFLATED_INPUT`] bytes of files.

use super::bulk::Bulk;
use chrono::{Datelike, NaiveDateTime, Timelike};

/// One file of the archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZipEntry {
    /// The path inside the archive, `/`-separated (`watch_history/alice.json`).
    pub name: String,
    pub content: Bulk,
}

/// The largest archive this writer makes: sizes and offsets are 32-bit without ZIP64.
pub const MAX_ZIP_BYTES: u64 = u32::MAX as u64;

/// The ZIP size in bytes whose base64 is `base64_len` characters (rounded down to 4): how
/// a scenario's `*_zip_base64_len` becomes an archive's size.
pub fn bytes_for_base64_len(base64_len: usize) -> u64 {
    base64_len as u64 / 4 * 3
}

const LOCAL_HEADER: u64 = 30;
const CENTRAL_HEADER: u64 = 46;
const END_RECORD: u64 = 22;

/// Bytes the archive adds around its entries' contents, for entries with these names.
pub fn overhead<'a>(names: impl IntoIterator<Item = &'a str>) -> u64 {
    END_RECORD
        + names
            .into_iter()
            .map(|n| LOCAL_HEADER + CENTRAL_HEADER + 2 * n.len() as u64)
            .sum::<u64>()
}

/// The archive of `entries`, each stamped `modified` (local time, as the plugin's files are).
/// `None` when it would exceed [`MAX_ZIP_BYTES`].
pub fn zip(entries: &[ZipEntry], modified: NaiveDateTime) -> Option<Bulk> {
    let total = overhead(entries.iter().map(|e| e.name.as_str()))
        + entries.iter().map(|e| e.content.len()).sum::<u64>();
    if total > MAX_ZIP_BYTES || entries.len() > usize::from(u16::MAX) {
        return None;
    }
    let (time, date) = dos_time(modified);
    let mut out = Bulk::new();
    let mut central = Vec::new();
    let mut offset: u64 = 0;
    for e in entries {
        let crc = e.content.crc32();
        // Checked above: every size and offset fits in 32 bits.
        let size = e.content.len() as u32;
        let name = e.name.as_bytes();
        let mut local = Vec::with_capacity(30 + name.len());
        local.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        local.extend_from_slice(&10u16.to_le_bytes()); // version needed: 1.0 (stored)
        local.extend_from_slice(&0u16.to_le_bytes()); // flags
        local.extend_from_slice(&0u16.to_le_bytes()); // method: stored
        local.extend_from_slice(&time.to_le_bytes());
        local.extend_from_slice(&date.to_le_bytes());
        local.extend_from_slice(&crc.to_le_bytes());
        local.extend_from_slice(&size.to_le_bytes()); // compressed
        local.extend_from_slice(&size.to_le_bytes()); // uncompressed
        local.extend_from_slice(&(name.len() as u16).to_le_bytes());
        local.extend_from_slice(&0u16.to_le_bytes()); // extra length
        local.extend_from_slice(name);

        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&0x031eu16.to_le_bytes()); // made by: Unix, 3.0
        central.extend_from_slice(&10u16.to_le_bytes());
        central.extend_from_slice(&0u16.to_le_bytes());
        central.extend_from_slice(&0u16.to_le_bytes());
        central.extend_from_slice(&time.to_le_bytes());
        central.extend_from_slice(&date.to_le_bytes());
        central.extend_from_slice(&crc.to_le_bytes());
        central.extend_from_slice(&size.to_le_bytes());
        central.extend_from_slice(&size.to_le_bytes());
        central.extend_from_slice(&(name.len() as u16).to_le_bytes());
        central.extend_from_slice(&0u16.to_le_bytes()); // extra length
        central.extend_from_slice(&0u16.to_le_bytes()); // comment length
        central.extend_from_slice(&0u16.to_le_bytes()); // disk
        central.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
        central.extend_from_slice(&(0o100_600u32 << 16).to_le_bytes()); // -rw-------
        central.extend_from_slice(&(offset as u32).to_le_bytes());
        central.extend_from_slice(name);

        offset += local.len() as u64 + e.content.len();
        out.bytes(local).append(&e.content);
    }
    let count = entries.len() as u16;
    let mut end = Vec::with_capacity(22);
    end.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    end.extend_from_slice(&0u16.to_le_bytes()); // this disk
    end.extend_from_slice(&0u16.to_le_bytes()); // disk of the central directory
    end.extend_from_slice(&count.to_le_bytes());
    end.extend_from_slice(&count.to_le_bytes());
    end.extend_from_slice(&(central.len() as u32).to_le_bytes());
    end.extend_from_slice(&(offset as u32).to_le_bytes());
    end.extend_from_slice(&0u16.to_le_bytes()); // comment length
    out.bytes(central).bytes(end);
    debug_assert_eq!(out.len(), total);
    Some(out)
}

/// The most file bytes [`zip_deflated`] compresses (it holds each file while it does).
pub const MAX_DEFLATED_INPUT: u64 = 64 * 1024 * 1024;

/// The archive of `entries` as the plugin writes it: deflated entries, CRC-32 and sizes
/// in the local headers (.NET writes them in place when it can seek, as it can in a
/// file). `None` past [`MAX_DEFLATED_INPUT`] bytes of files.
pub fn zip_deflated(entries: &[ZipEntry], modified: NaiveDateTime) -> Option<Bulk> {
    use flate2::Compression;
    use flate2::write::DeflateEncoder;
    use std::io::Write as _;
    if entries.iter().map(|e| e.content.len()).sum::<u64>() > MAX_DEFLATED_INPUT {
        return None;
    }
    let (time, date) = dos_time(modified);
    let mut out = Vec::new();
    let mut central = Vec::new();
    for e in entries {
        let content = e.content.to_vec();
        let mut encoder = DeflateEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(&content).ok()?;
        let body = encoder.finish().ok()?;
        let header = Header {
            method: 8,
            time,
            date,
            crc: e.content.crc32(),
            compressed: u32::try_from(body.len()).ok()?,
            size: u32::try_from(content.len()).ok()?,
            name: e.name.as_bytes(),
        };
        central.extend_from_slice(&header.central(u32::try_from(out.len()).ok()?));
        out.extend_from_slice(&header.local());
        out.extend_from_slice(&body);
    }
    let mut end = Vec::with_capacity(22);
    let count = u16::try_from(entries.len()).ok()?;
    end.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    end.extend_from_slice(&[0; 4]); // this disk, disk of the central directory
    end.extend_from_slice(&count.to_le_bytes());
    end.extend_from_slice(&count.to_le_bytes());
    end.extend_from_slice(&u32::try_from(central.len()).ok()?.to_le_bytes());
    end.extend_from_slice(&u32::try_from(out.len()).ok()?.to_le_bytes());
    end.extend_from_slice(&0u16.to_le_bytes());
    let mut bulk = Bulk::new();
    bulk.bytes(out).bytes(central).bytes(end);
    Some(bulk)
}

/// A deflated entry's headers.
struct Header<'a> {
    method: u16,
    time: u16,
    date: u16,
    crc: u32,
    compressed: u32,
    size: u32,
    name: &'a [u8],
}

impl Header<'_> {
    fn local(&self) -> Vec<u8> {
        let mut h = Vec::with_capacity(30 + self.name.len());
        h.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        h.extend_from_slice(&20u16.to_le_bytes()); // version needed: 2.0 (deflate)
        h.extend_from_slice(&0u16.to_le_bytes()); // flags
        self.common(&mut h);
        h.extend_from_slice(&0u16.to_le_bytes()); // extra length
        h.extend_from_slice(self.name);
        h
    }

    fn central(&self, offset: u32) -> Vec<u8> {
        let mut h = Vec::with_capacity(46 + self.name.len());
        h.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        h.extend_from_slice(&0x0014u16.to_le_bytes()); // made by: MS-DOS, 2.0 (as .NET)
        h.extend_from_slice(&20u16.to_le_bytes());
        h.extend_from_slice(&0u16.to_le_bytes());
        self.common(&mut h);
        h.extend_from_slice(&[0; 8]); // extra, comment, disk, internal attributes
        h.extend_from_slice(&0u32.to_le_bytes()); // external attributes
        h.extend_from_slice(&offset.to_le_bytes());
        h.extend_from_slice(self.name);
        h
    }

    /// Method, time, date, CRC, sizes, name length.
    fn common(&self, h: &mut Vec<u8>) {
        h.extend_from_slice(&self.method.to_le_bytes());
        h.extend_from_slice(&self.time.to_le_bytes());
        h.extend_from_slice(&self.date.to_le_bytes());
        h.extend_from_slice(&self.crc.to_le_bytes());
        h.extend_from_slice(&self.compressed.to_le_bytes());
        h.extend_from_slice(&self.size.to_le_bytes());
        h.extend_from_slice(&(self.name.len() as u16).to_le_bytes());
    }
}

/// MS-DOS time and date (2-second resolution, years from 1980).
fn dos_time(t: NaiveDateTime) -> (u16, u16) {
    let year = t.year().clamp(1980, 2107) as u16;
    let time = ((t.hour() as u16) << 11) | ((t.minute() as u16) << 5) | (t.second() as u16 / 2);
    let date = ((year - 1980) << 9) | ((t.month() as u16) << 5) | t.day() as u16;
    (time, date)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Walk the archive front to back as a streaming reader would, checking every field.
    fn entries_of(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
        let u16_at = |i: usize| u16::from_le_bytes([bytes[i], bytes[i + 1]]) as usize;
        let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().unwrap());
        let mut out = Vec::new();
        let mut i = 0;
        while u32_at(i) == 0x0403_4b50 {
            let (crc, size, name_len) = (u32_at(i + 14), u32_at(i + 18) as usize, u16_at(i + 26));
            let name = String::from_utf8(bytes[i + 30..i + 30 + name_len].to_vec()).unwrap();
            let data = bytes[i + 30 + name_len..i + 30 + name_len + size].to_vec();
            assert_eq!(crc, super::super::bulk::crc32(&data), "{name}");
            out.push((name, data));
            i += 30 + name_len + size;
        }
        assert_eq!(u32_at(i), 0x0201_4b50, "the central directory follows");
        let end = bytes.len() - 22;
        assert_eq!(u32_at(end), 0x0605_4b50);
        assert_eq!(u16_at(end + 10), out.len());
        assert_eq!(u32_at(end + 16) as usize, i, "central directory offset");
        out
    }

    #[test]
    fn writes_a_readable_archive_of_the_planned_size() {
        let mut big = Bulk::new();
        big.bytes(b"[".to_vec())
            .repeat(b"{\"played\":true},".to_vec(), 5000)
            .bytes(b"{}]".to_vec());
        let mut log = Bulk::new();
        log.bytes(b"06:49:12 Migrator Export started\n".to_vec());
        let entries = vec![
            ZipEntry {
                name: "export.log".into(),
                content: log,
            },
            ZipEntry {
                name: "watch_history/alice.json".into(),
                content: big.clone(),
            },
        ];
        let t = chrono::NaiveDate::from_ymd_opt(2025, 10, 7)
            .unwrap()
            .and_hms_opt(8, 49, 13)
            .unwrap();
        let z = zip(&entries, t).unwrap();
        let bytes = z.to_vec();
        assert_eq!(
            z.len(),
            overhead(["export.log", "watch_history/alice.json"])
                + entries.iter().map(|e| e.content.len()).sum::<u64>()
        );
        let read = entries_of(&bytes);
        assert_eq!(read[0].0, "export.log");
        assert_eq!(read[1], ("watch_history/alice.json".into(), big.to_vec()));
        assert_eq!(
            dos_time(t),
            ((8 << 11) | (49 << 5) | 6, (45 << 9) | (10 << 5) | 7)
        );
    }
}
