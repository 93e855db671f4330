//! Reading a ZIP front to back, as it streams past, to prove what it is: every entry's
//! header, data and CRC-32, then the central directory and its end record, which must
//! agree with the entries seen. What it holds comes out as [`ZipFacts`]: the number of
//! entries and their bytes, the SHA-256 of `export.log` and the number of users in
//! `users_basic.json`.
//!
//! A stream, not a file, because the archive writes the ZIP (encrypted, maybe) while it
//! arrives and must not read it back: the central directory comes last, so this reader
//! walks the local headers instead, and checks the directory when it gets there.
//!
//! Both layouts the Migrator's ZIPs come in are read: the plugin's own (.NET's
//! `ZipFile.CreateFromDirectory`: *deflated* entries, sizes in the local headers) and the
//! simulator's (*stored* entries). Entries with a data descriptor (sizes after the data,
//! as a writer that cannot seek leaves them) are read when deflated (the deflate stream
//! says where it ends); a stored one cannot be, and is refused. ZIP64 sizes and offsets
//! are read; encrypted entries and other compression methods are refused.

use flate2::Crc;
use flate2::bufread::DeflateDecoder;
use std::io::{self, BufRead, BufReader, Read};

const LOCAL: u32 = 0x0403_4b50;
const CENTRAL: u32 = 0x0201_4b50;
const DESCRIPTOR: u32 = 0x0807_4b50;
const ZIP64_END: u32 = 0x0606_4b50;
const ZIP64_LOCATOR: u32 = 0x0706_4b50;
const END: u32 = 0x0605_4b50;
/// 32-bit fields at this value are in the ZIP64 extra field instead.
const MAX32: u32 = u32::MAX;

/// The file an export's log is saved to, and the file of its users.
pub const EXPORT_LOG: &str = "export.log";
pub const USERS_FILE: &str = "users_basic.json";

/// What a ZIP holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZipFacts {
    pub entries: u64,
    /// The entries' bytes, uncompressed.
    pub content_bytes: u64,
    /// SHA-256 of `export.log`'s content, if the ZIP has one.
    pub export_log_sha256: Option<[u8; 32]>,
    /// The elements of `users_basic.json`'s top-level array, if the ZIP has the file.
    pub users: Option<Result<u64, String>>,
}

/// Why a stream is not taken for a ZIP.
#[derive(Debug, thiserror::Error)]
pub enum ZipProblem {
    /// The stream itself failed (the disk, the network, a decryption): not the ZIP's fault.
    #[error("{0}")]
    Read(io::Error),
    #[error("it is not a readable ZIP: {0}")]
    Format(String),
}

fn format(message: impl Into<String>) -> ZipProblem {
    ZipProblem::Format(message.into())
}

/// Read the whole stream as a ZIP; nothing may follow its end record.
pub fn inspect(input: impl Read) -> Result<ZipFacts, ZipProblem> {
    let mut input = Input {
        inner: BufReader::with_capacity(64 * 1024, input),
        pos: 0,
        failed: None,
    };
    let result = read_zip(&mut input);
    // A failure of the stream underneath shows as a format problem above it.
    match input.failed.take() {
        Some(e) => Err(ZipProblem::Read(e)),
        None => result,
    }
}

fn read_zip<R: Read>(input: &mut Input<R>) -> Result<ZipFacts, ZipProblem> {
    let mut facts = ZipFacts {
        entries: 0,
        content_bytes: 0,
        export_log_sha256: None,
        users: None,
    };
    let mut seen: Vec<(u64, u32)> = Vec::new();
    loop {
        let at = input.pos;
        let signature = match input.u32_or_eof()? {
            Some(s) => s,
            None if at == 0 => return Err(format("it is empty")),
            None => {
                return Err(format(format!(
                    "it ends at byte {at} without a central directory"
                )));
            }
        };
        match signature {
            LOCAL => {
                let entry = read_entry(input, &mut facts)?;
                seen.push((at, entry));
            }
            CENTRAL | ZIP64_END | END => {
                read_directory(input, signature, at, &seen)?;
                facts.entries = seen.len() as u64;
                return Ok(facts);
            }
            other => {
                return Err(format(format!(
                    "at byte {at} there is {other:#010x} where a file header or the central directory should be"
                )));
            }
        }
    }
}

/// One entry after its signature: header, data, descriptor. Returns its CRC-32.
fn read_entry<R: Read>(input: &mut Input<R>, facts: &mut ZipFacts) -> Result<u32, ZipProblem> {
    let h = input.array::<26>("a file header")?;
    let flags = le16(&h[2..]);
    let method = le16(&h[4..]);
    let mut crc = le32(&h[10..]);
    let (mut compressed, mut size) = (u64::from(le32(&h[14..])), u64::from(le32(&h[18..])));
    let name_len = usize::from(le16(&h[22..]));
    let extra_len = usize::from(le16(&h[24..]));
    let name = input.bytes(name_len, "a file name")?;
    let extra = input.bytes(extra_len, "a file header's extra field")?;
    let shown = String::from_utf8_lossy(&name).into_owned();
    if flags & 1 != 0 {
        return Err(format(format!("entry {shown:?} is encrypted")));
    }
    let zip64 = zip64_sizes(&extra);
    if let Some((z_size, z_compressed)) = zip64 {
        if size == u64::from(MAX32) {
            size = z_size;
        }
        if compressed == u64::from(MAX32) {
            compressed = z_compressed;
        }
    }
    let descriptor = flags & 8 != 0;
    let mut sink = EntrySink::for_name(&name);
    let data_start = input.pos;
    match (method, descriptor) {
        (0, false) => copy_stored(input, compressed, &mut sink)?,
        (0, true) => {
            return Err(format(format!(
                "entry {shown:?} is stored with its sizes after the data, which cannot be read as a stream"
            )));
        }
        (8, false) => inflate(&mut (&mut *input).take(compressed), &shown, &mut sink)?,
        (8, true) => inflate(&mut *input, &shown, &mut sink)?,
        (m, _) => {
            return Err(format(format!(
                "entry {shown:?} uses compression method {m}; the plugin writes stored (0) or deflated (8) entries"
            )));
        }
    }
    if descriptor {
        compressed = input.pos - data_start;
        (crc, size) = read_descriptor(input, zip64.is_some(), compressed, &shown)?;
    } else if input.pos - data_start != compressed {
        // A deflate stream that ends before its stated size: skip the rest.
        let rest = compressed.saturating_sub(input.pos - data_start);
        io::copy(&mut (&mut *input).take(rest), &mut io::sink()).map_err(|e| input.error(e))?;
    }
    if sink.bytes != size {
        return Err(format(format!(
            "entry {shown:?} holds {} bytes where its header says {size}",
            sink.bytes
        )));
    }
    if sink.crc.sum() != crc {
        return Err(format(format!(
            "entry {shown:?} is damaged: its CRC-32 is {:08x}, its header says {crc:08x}",
            sink.crc.sum()
        )));
    }
    facts.content_bytes += size;
    sink.finish(facts);
    Ok(crc)
}

/// The sizes in a ZIP64 extra field (tag 1): uncompressed, then compressed.
fn zip64_sizes(extra: &[u8]) -> Option<(u64, u64)> {
    let mut rest = extra;
    while rest.len() >= 4 {
        let (tag, len) = (le16(rest), usize::from(le16(&rest[2..])));
        let data = rest.get(4..4 + len)?;
        if tag == 1 && data.len() >= 16 {
            return Some((le64(data), le64(&data[8..])));
        }
        rest = &rest[4 + len..];
    }
    None
}

fn copy_stored<R: Read>(
    input: &mut Input<R>,
    len: u64,
    sink: &mut EntrySink,
) -> Result<(), ZipProblem> {
    let mut left = len;
    while left > 0 {
        if input.available()? == 0 {
            return Err(format(format!(
                "it ends inside an entry, {left} bytes short"
            )));
        }
        let buf = input.inner.buffer();
        let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        sink.take(&buf[..n]);
        input.consume(n);
        left -= n as u64;
    }
    Ok(())
}

fn inflate(input: impl BufRead, name: &str, sink: &mut EntrySink) -> Result<(), ZipProblem> {
    let mut decoder = DeflateDecoder::new(input);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match decoder.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => sink.take(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(format(format!(
                    "entry {name:?} has damaged deflate data ({e})"
                )));
            }
        }
    }
}

/// The data descriptor after a deflated entry: (CRC-32, uncompressed size). Its sizes are
/// 8 bytes in a ZIP64 entry, else 4.
fn read_descriptor<R: Read>(
    input: &mut Input<R>,
    zip64: bool,
    compressed: u64,
    name: &str,
) -> Result<(u32, u64), ZipProblem> {
    let mut first = le32(&input.array::<4>("a data descriptor")?);
    if first == DESCRIPTOR {
        first = le32(&input.array::<4>("a data descriptor")?);
    }
    let (stated, size) = if zip64 {
        let s = input.array::<16>("a data descriptor")?;
        (le64(&s), le64(&s[8..]))
    } else {
        let s = input.array::<8>("a data descriptor")?;
        (u64::from(le32(&s)), u64::from(le32(&s[4..])))
    };
    if stated != compressed {
        return Err(format(format!(
            "entry {name:?}'s data descriptor says {stated} compressed bytes where its data took {compressed}"
        )));
    }
    Ok((first, size))
}

/// The central directory (from its first record, `signature` at byte `at`), a ZIP64 end
/// record and locator if any, the end record, and then nothing. It must list the entries
/// seen, at the offsets they were seen, with the same CRCs.
fn read_directory<R: Read>(
    input: &mut Input<R>,
    mut signature: u32,
    at: u64,
    seen: &[(u64, u32)],
) -> Result<(), ZipProblem> {
    let mut listed = 0usize;
    while signature == CENTRAL {
        let h = input.array::<42>("a central directory record")?;
        let crc = le32(&h[12..]);
        let name = input.bytes(usize::from(le16(&h[24..])), "a file name")?;
        let extra = input.bytes(usize::from(le16(&h[26..])), "an extra field")?;
        input.bytes(usize::from(le16(&h[28..])), "a file comment")?;
        let mut offset = u64::from(le32(&h[38..]));
        if offset == u64::from(MAX32) {
            offset = zip64_offset(&h, &extra).unwrap_or(offset);
        }
        let shown = String::from_utf8_lossy(&name);
        match seen.get(listed) {
            Some(&(o, c)) if o == offset && c == crc => {}
            _ => {
                return Err(format(format!(
                    "its central directory lists {shown:?} at byte {offset}, which is not the entry found there"
                )));
            }
        }
        listed += 1;
        signature = input.u32("the end of the central directory")?;
    }
    if listed != seen.len() {
        return Err(format(format!(
            "its central directory lists {listed} entries where {} were found",
            seen.len()
        )));
    }
    if signature == ZIP64_END {
        let size = le64(&input.array::<8>("a ZIP64 end record")?);
        io::copy(&mut (&mut *input).take(size), &mut io::sink()).map_err(|e| input.error(e))?;
        if input.u32("a ZIP64 locator")? != ZIP64_LOCATOR {
            return Err(format(
                "its ZIP64 end record is not followed by its locator",
            ));
        }
        input.array::<16>("a ZIP64 locator")?;
        signature = input.u32("the end record")?;
    }
    if signature != END {
        return Err(format(format!(
            "its central directory is not followed by an end record (found {signature:#010x})"
        )));
    }
    let end = input.array::<18>("the end record")?;
    let (count, directory_at) = (le16(&end[6..]), le32(&end[12..]));
    input.bytes(usize::from(le16(&end[16..])), "the ZIP comment")?;
    if (count != u16::MAX && usize::from(count) != listed)
        || (directory_at != MAX32 && u64::from(directory_at) != at)
    {
        return Err(format(format!(
            "its end record says {count} entries with a directory at byte {directory_at}, where {listed} entries and a directory at byte {at} were found"
        )));
    }
    let trailing = input.available()?;
    if trailing > 0 {
        return Err(format(format!(
            "bytes follow its end record at byte {}",
            input.pos
        )));
    }
    Ok(())
}

/// The local header offset in a central record's ZIP64 extra field: after the sizes that
/// are at their 32-bit maximum in the record.
fn zip64_offset(record: &[u8; 42], extra: &[u8]) -> Option<u64> {
    let mut skip = 0;
    for field in [&record[20..24], &record[16..20]] {
        if le32(field) == MAX32 {
            skip += 8;
        }
    }
    let mut rest = extra;
    while rest.len() >= 4 {
        let (tag, len) = (le16(rest), usize::from(le16(&rest[2..])));
        let data = rest.get(4..4 + len)?;
        if tag == 1 {
            return data.get(skip..skip + 8).map(le64);
        }
        rest = &rest[4 + len..];
    }
    None
}

/// Where an entry's bytes go: its CRC and size, and what is proven of the two files that
/// matter.
struct EntrySink {
    crc: Crc,
    bytes: u64,
    kind: Kind,
}

enum Kind {
    Other,
    ExportLog(ring::digest::Context),
    Users(ArrayCounter),
}

impl EntrySink {
    fn for_name(name: &[u8]) -> Self {
        let kind = if name == EXPORT_LOG.as_bytes() {
            Kind::ExportLog(ring::digest::Context::new(&ring::digest::SHA256))
        } else if name == USERS_FILE.as_bytes() {
            Kind::Users(ArrayCounter::default())
        } else {
            Kind::Other
        };
        EntrySink {
            crc: Crc::new(),
            bytes: 0,
            kind,
        }
    }

    fn take(&mut self, data: &[u8]) {
        self.crc.update(data);
        self.bytes += data.len() as u64;
        match &mut self.kind {
            Kind::Other => {}
            Kind::ExportLog(hash) => hash.update(data),
            Kind::Users(counter) => counter.feed(data),
        }
    }

    fn finish(self, facts: &mut ZipFacts) {
        match self.kind {
            Kind::Other => {}
            Kind::ExportLog(hash) => {
                let mut digest = [0u8; 32];
                digest.copy_from_slice(hash.finish().as_ref());
                facts.export_log_sha256 = Some(digest);
            }
            Kind::Users(counter) => facts.users = Some(counter.finish()),
        }
    }
}

/// Counts the elements of a JSON document's top-level array as it streams, checking
/// only its brackets and strings: enough to count users without holding the file.
#[derive(Debug, Default)]
struct ArrayCounter {
    started: bool,
    closed: bool,
    /// Open brackets and braces.
    depth: u32,
    in_string: bool,
    escaped: bool,
    /// A value at depth 1 has begun since the last comma.
    in_value: bool,
    count: u64,
    error: Option<String>,
    offset: u64,
}

impl ArrayCounter {
    fn feed(&mut self, data: &[u8]) {
        for &b in data {
            if self.error.is_none() {
                self.step(b);
            }
            self.offset += 1;
        }
    }

    fn step(&mut self, b: u8) {
        if self.in_string {
            match (self.escaped, b) {
                (false, b'\\') => self.escaped = true,
                (false, b'"') => self.in_string = false,
                _ => self.escaped = false,
            }
            return;
        }
        let space = matches!(b, b' ' | b'\t' | b'\r' | b'\n');
        if !self.started || self.closed {
            // A UTF-8 byte order mark may open the file.
            let bom =
                !self.started && self.offset < 3 && [0xEF, 0xBB, 0xBF][self.offset as usize] == b;
            match (self.started, b) {
                _ if space || bom => {}
                (false, b'[') => (self.started, self.depth) = (true, 1),
                (false, _) => self.error = Some("it is not a JSON array".into()),
                (true, _) => {
                    self.error = Some(format!(
                        "something follows its array at byte {}",
                        self.offset
                    ))
                }
            }
            return;
        }
        if self.depth == 1 && !space && !matches!(b, b',' | b']') && !self.in_value {
            self.in_value = true;
            self.count += 1;
        }
        match b {
            b'"' => self.in_string = true,
            b'[' | b'{' => self.depth += 1,
            b']' | b'}' => {
                self.depth -= 1;
                self.closed = self.depth == 0;
            }
            b',' if self.depth == 1 => self.in_value = false,
            _ => {}
        }
    }

    fn finish(self) -> Result<u64, String> {
        match self.error {
            Some(e) => Err(e),
            None if !self.closed => Err("its array is not closed".into()),
            None => Ok(self.count),
        }
    }
}

/// The stream being read, its position, and the first error of the stream underneath.
struct Input<R> {
    inner: BufReader<R>,
    pos: u64,
    failed: Option<io::Error>,
}

impl<R: Read> Input<R> {
    /// Remember a failure of the stream underneath; the caller reports it (see
    /// [`inspect`]).
    fn error(&mut self, e: io::Error) -> ZipProblem {
        let message = e.to_string();
        self.failed.get_or_insert(e);
        ZipProblem::Format(message)
    }

    /// Bytes buffered and ready (reading more if none are): 0 only at the end.
    fn available(&mut self) -> Result<usize, ZipProblem> {
        match self.inner.fill_buf() {
            Ok(buf) => Ok(buf.len()),
            Err(e) => Err(self.error(e)),
        }
    }

    fn read_full(&mut self, buf: &mut [u8], what: &str) -> Result<usize, ZipProblem> {
        let mut got = 0;
        while got < buf.len() {
            match self.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.error(e)),
            }
        }
        if got > 0 && got < buf.len() {
            return Err(format(format!(
                "it ends inside {what} at byte {}",
                self.pos
            )));
        }
        Ok(got)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], ZipProblem> {
        let mut buf = [0u8; N];
        if self.read_full(&mut buf, what)? < N {
            return Err(format(format!(
                "it ends before {what} at byte {}",
                self.pos
            )));
        }
        Ok(buf)
    }

    fn bytes(&mut self, len: usize, what: &str) -> Result<Vec<u8>, ZipProblem> {
        let mut buf = vec![0u8; len];
        if len > 0 && self.read_full(&mut buf, what)? < len {
            return Err(format(format!(
                "it ends before {what} at byte {}",
                self.pos
            )));
        }
        Ok(buf)
    }

    fn u32(&mut self, what: &str) -> Result<u32, ZipProblem> {
        Ok(le32(&self.array::<4>(what)?))
    }

    /// The next signature, or `None` at the very end of the stream.
    fn u32_or_eof(&mut self) -> Result<Option<u32>, ZipProblem> {
        let mut buf = [0u8; 4];
        match self.read_full(&mut buf, "a signature")? {
            0 => Ok(None),
            _ => Ok(Some(le32(&buf))),
        }
    }
}

impl<R: Read> Read for Input<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl<R: Read> BufRead for Input<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, amount: usize) {
        self.pos += amount as u64;
        self.inner.consume(amount);
    }
}

fn le16(b: &[u8]) -> u16 {
    u16::from_le_bytes([b[0], b[1]])
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn le64(b: &[u8]) -> u64 {
    u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

#[cfg(test)]
mod tests;
