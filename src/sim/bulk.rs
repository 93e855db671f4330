//! Large byte strings described, not held: a [`Bulk`] is a list of literal pieces and
//! repeated blocks, produced in chunks while it is sent. Its length and CRC-32 are known
//! without producing it (the CRC of a repeated block is combined in O(log n) steps), and
//! [`Base64Stream`] turns any chunk sequence into base64 text piece by piece.
//!
//! This is what lets a simulated server store an export ZIP of hundreds of megabytes in
//! its plugin configuration at the cost of a few hundred bytes, and serve it (and an Import
//! upload beside it) without ever holding it whole.

use base64::Engine as _;
use std::borrow::Cow;
use std::sync::Arc;

/// The largest chunk [`Bulk::chunks`] yields.
pub const CHUNK: usize = 64 * 1024;

/// One piece of a [`Bulk`].
#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Bytes(Arc<[u8]>),
    /// `block` written `count` times.
    Repeat {
        block: Arc<[u8]>,
        count: u64,
    },
}

impl Piece {
    fn len(&self) -> u64 {
        match self {
            Piece::Bytes(b) => b.len() as u64,
            Piece::Repeat { block, count } => block.len() as u64 * count,
        }
    }

    fn crc32(&self) -> u32 {
        match self {
            Piece::Bytes(b) => crc32(b),
            Piece::Repeat { block, count } => {
                crc32_repeat(crc32(block), block.len() as u64, *count)
            }
        }
    }
}

/// A byte string made of literal pieces and repeated blocks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bulk {
    pieces: Vec<Piece>,
    len: u64,
}

impl Bulk {
    pub fn new() -> Self {
        Bulk::default()
    }

    /// Append literal bytes.
    pub fn bytes(&mut self, bytes: impl Into<Vec<u8>>) -> &mut Self {
        let bytes: Vec<u8> = bytes.into();
        if !bytes.is_empty() {
            self.len += bytes.len() as u64;
            self.pieces.push(Piece::Bytes(bytes.into()));
        }
        self
    }

    /// Append `block` `count` times.
    pub fn repeat(&mut self, block: impl Into<Vec<u8>>, count: u64) -> &mut Self {
        let block: Vec<u8> = block.into();
        if !block.is_empty() && count > 0 {
            let piece = Piece::Repeat {
                block: block.into(),
                count,
            };
            self.len += piece.len();
            self.pieces.push(piece);
        }
        self
    }

    /// Append another bulk.
    pub fn append(&mut self, other: &Bulk) -> &mut Self {
        self.pieces.extend(other.pieces.iter().cloned());
        self.len += other.len;
        self
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// CRC-32 (the ZIP one) of the whole string, without producing it.
    pub fn crc32(&self) -> u32 {
        self.pieces
            .iter()
            .fold(0, |crc, p| crc32_combine(crc, p.crc32(), p.len()))
    }

    /// Keep only the first `len` bytes (a ZIP cut short).
    pub fn truncate(&mut self, len: u64) {
        let mut kept = Bulk::new();
        for piece in &self.pieces {
            let room = len - kept.len;
            if room == 0 {
                break;
            }
            match piece {
                _ if piece.len() <= room => {
                    kept.pieces.push(piece.clone());
                    kept.len += piece.len();
                }
                Piece::Bytes(b) => {
                    kept.bytes(b[..room as usize].to_vec());
                }
                Piece::Repeat { block, .. } => {
                    let whole = room / block.len() as u64;
                    kept.repeat(block.to_vec(), whole);
                    kept.bytes(block[..(room - whole * block.len() as u64) as usize].to_vec());
                }
            }
        }
        *self = kept;
    }

    /// The bytes in chunks of at most [`CHUNK`].
    pub fn chunks(&self) -> Chunks<'_> {
        Chunks {
            bulk: self,
            piece: 0,
            done_in_piece: 0,
        }
    }

    /// The whole string (for tests and small values).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(usize::try_from(self.len).unwrap_or(0));
        for c in self.chunks() {
            out.extend_from_slice(&c);
        }
        out
    }
}

/// Iterator of [`Bulk::chunks`].
pub struct Chunks<'a> {
    bulk: &'a Bulk,
    piece: usize,
    /// Bytes of the current piece already yielded.
    done_in_piece: u64,
}

impl Iterator for Chunks<'_> {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        let piece = self.bulk.pieces.get(self.piece)?;
        let mut out = Vec::new();
        match piece {
            Piece::Bytes(b) => {
                let start = self.done_in_piece as usize;
                let end = (start + CHUNK).min(b.len());
                out.extend_from_slice(&b[start..end]);
            }
            Piece::Repeat { block, .. } => {
                // Whole groups of three blocks while they last: every such chunk is the
                // same bytes at the same phase, so a base64 encoder downstream sees the
                // same input again and can reuse its output (see `base64_chunks`).
                let left = piece.len() - self.done_in_piece;
                let group = 3 * block.len() as u64;
                let whole = if group <= CHUNK as u64 {
                    CHUNK as u64 / group * group
                } else {
                    CHUNK as u64
                };
                let want = if left >= whole { whole } else { left } as usize;
                let mut at = (self.done_in_piece % block.len() as u64) as usize;
                out.reserve(want);
                while out.len() < want {
                    let take = (block.len() - at).min(want - out.len());
                    out.extend_from_slice(&block[at..at + take]);
                    at = 0;
                }
            }
        }
        self.done_in_piece += out.len() as u64;
        if self.done_in_piece >= piece.len() {
            self.piece += 1;
            self.done_in_piece = 0;
        }
        Some(out)
    }
}

/// Base64 text up to this many characters is made once, when a ZIP field's value is
/// stored, and held ([`Base64Value`]); longer text is made while it is sent.
pub const HELD_TEXT_MAX: u64 = 1 << 20;

/// The value of one of the plugin's ZIP fields. The plugin keeps base64 text (it calls
/// `Convert.ToBase64String` when it stores the ZIP) and Jellyfin copies that string into
/// every answer; so does this, up to [`HELD_TEXT_MAX`] characters. A longer value is kept
/// as its [`Bulk`] of bytes and encoded while it is sent, so that a 500 MB export is
/// never held whole.
#[derive(Debug, PartialEq, Eq)]
pub struct Base64Value {
    bytes: Bulk,
    text: Option<Box<[u8]>>,
}

impl Base64Value {
    pub fn new(bytes: Bulk) -> Self {
        let text = (Base64Stream::encoded_len(bytes.len()) <= HELD_TEXT_MAX)
            .then(|| base64(&bytes.to_vec()).into_bytes().into_boxed_slice());
        Base64Value { bytes, text }
    }

    /// The bytes the text stands for.
    pub fn bytes(&self) -> &Bulk {
        &self.bytes
    }

    /// The length of the text.
    pub fn text_len(&self) -> u64 {
        Base64Stream::encoded_len(self.bytes.len())
    }

    /// The text, in chunks: borrowed when it is held, made chunk by chunk when not.
    pub fn text_chunks(&self) -> Box<dyn Iterator<Item = Cow<'_, [u8]>> + Send + '_> {
        match &self.text {
            Some(text) => Box::new(text.chunks(CHUNK).map(Cow::Borrowed)),
            None => Box::new(base64_chunks(&self.bytes).map(Cow::Owned)),
        }
    }
}

/// Base64 (standard alphabet, padded) of a byte stream fed in pieces of any size.
#[derive(Debug, Default)]
pub struct Base64Stream {
    /// 0 to 2 bytes waiting for the rest of their group of three.
    carry: Vec<u8>,
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

impl Base64Stream {
    /// Encode `bytes`, appending the text of every complete group of three to `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        let mut bytes = bytes;
        while !self.carry.is_empty() && self.carry.len() < 3 && !bytes.is_empty() {
            self.carry.push(bytes[0]);
            bytes = &bytes[1..];
        }
        if self.carry.len() == 3 {
            encode_group(&self.carry, out);
            self.carry.clear();
        }
        let whole = bytes.len() / 3 * 3;
        // The base64 crate's encoder: the byte-at-a-time loop took a quarter of the
        // simulator's CPU in the fleet bench (every config read sends a 64 KiB ZIP).
        let text = base64::engine::general_purpose::STANDARD.encode(&bytes[..whole]);
        out.extend_from_slice(text.as_bytes());
        self.carry.extend_from_slice(&bytes[whole..]);
    }

    /// The last group, padded with `=`.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.carry.is_empty() {
            encode_group(&self.carry, out);
            self.carry.clear();
        }
    }

    /// The length of the base64 text of `len` bytes.
    pub fn encoded_len(len: u64) -> u64 {
        len.div_ceil(3) * 4
    }
}

/// One group of 1 to 3 bytes as 4 characters (padded).
fn encode_group(group: &[u8], out: &mut Vec<u8>) {
    let b = [
        group[0],
        *group.get(1).unwrap_or(&0),
        *group.get(2).unwrap_or(&0),
    ];
    let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
    for i in 0..4 {
        out.push(if i <= group.len() {
            ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]
        } else {
            b'='
        });
    }
}

/// The base64 text of `bulk`, chunk by chunk. A chunk equal to the one before, met with
/// the same bytes carried over, has the same text: it is reused instead of encoded again
/// (the filler of a big export is one block repeated millions of times).
pub fn base64_chunks(bulk: &Bulk) -> impl Iterator<Item = Vec<u8>> + Send + '_ {
    let mut chunks = bulk.chunks();
    let mut encoder = Base64Stream::default();
    // The last chunk encoded: the carry it met, its bytes, its text.
    let mut last: Option<(Vec<u8>, Vec<u8>, Vec<u8>)> = None;
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        let mut out = Vec::new();
        let Some(chunk) = chunks.next() else {
            encoder.finish(&mut out);
            done = true;
            return Some(out);
        };
        if let Some((carry, input, text)) = &last
            && *carry == encoder.carry
            && *input == chunk
        {
            // Same carry and bytes in: same text out, and the carry it leaves is the one
            // it met (a chunk repeated back to back leaves what the next one meets).
            let mut probe = encoder.carry.clone();
            probe.extend_from_slice(&chunk[chunk.len() - chunk.len().min(2)..]);
            let left = (encoder.carry.len() + chunk.len()) % 3;
            if probe[probe.len() - left..] == encoder.carry[..] {
                return Some(text.clone());
            }
        }
        let carry = encoder.carry.clone();
        encoder.push(&chunk, &mut out);
        last = Some((carry, chunk, out.clone()));
        Some(out)
    })
}

/// The base64 text of `bytes` (small values).
pub fn base64(bytes: &[u8]) -> String {
    let mut out = Vec::new();
    let mut s = Base64Stream::default();
    s.push(bytes, &mut out);
    s.finish(&mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// Decode standard base64 (for tests of what the simulator serves); `None` if malformed.
pub fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() / 4 * 3 + 3);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in text.bytes() {
        let v = ALPHABET.iter().position(|&a| a == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// The ZIP/zlib CRC-32 table (reflected polynomial 0xEDB88320).
const CRC_TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

/// CRC-32 of `bytes`.
pub fn crc32(bytes: &[u8]) -> u32 {
    !bytes.iter().fold(!0u32, |c, &b| {
        CRC_TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8)
    })
}

/// `a * b mod p` in GF(2) for the reflected CRC polynomial (zlib's `multmodp`).
const fn multmodp(a: u32, mut b: u32) -> u32 {
    let mut p = 0u32;
    let mut m = 1u32 << 31;
    while m != 0 {
        if a & m != 0 {
            p ^= b;
        }
        b = if b & 1 != 0 {
            (b >> 1) ^ 0xEDB8_8320
        } else {
            b >> 1
        };
        m >>= 1;
    }
    p
}

/// `x^(2^j) mod p` for j = 0..32 (zlib's `x2n_table`). The order of x modulo the CRC
/// polynomial divides 2^32 - 1, so `x^(2^32) = x` and the table repeats with period 32.
const X2N: [u32; 32] = {
    let mut t = [0u32; 32];
    let mut x = 1u32 << 30; // x^1
    let mut j = 0;
    while j < 32 {
        t[j] = x;
        x = multmodp(x, x);
        j += 1;
    }
    t
};

/// `x^(n * 2^k) mod p` (zlib's `x2nmodp`).
fn x2nmodp(mut n: u64, mut k: u32) -> u32 {
    let mut p = 1u32 << 31; // x^0
    while n != 0 {
        if n & 1 != 0 {
            p = multmodp(X2N[(k & 31) as usize], p);
        }
        n >>= 1;
        k += 1;
    }
    p
}

/// The CRC-32 of `A ‖ B` from `crc(A)`, `crc(B)` and `len(B)`.
pub fn crc32_combine(crc_a: u32, crc_b: u32, len_b: u64) -> u32 {
    multmodp(x2nmodp(len_b, 3), crc_a) ^ crc_b
}

/// The CRC-32 of a block repeated `count` times, by doubling.
fn crc32_repeat(block_crc: u32, block_len: u64, mut count: u64) -> u32 {
    let (mut result, mut power, mut power_len) = (0u32, block_crc, block_len);
    while count > 0 {
        if count & 1 != 0 {
            result = crc32_combine(result, power, power_len);
        }
        count >>= 1;
        if count > 0 {
            power = crc32_combine(power, power, power_len);
            power_len *= 2;
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_check_value_and_combines() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
        let (a, b) = (b"hello, ".as_slice(), b"world".as_slice());
        assert_eq!(
            crc32_combine(crc32(a), crc32(b), b.len() as u64),
            crc32(b"hello, world")
        );
        for count in [0u64, 1, 2, 3, 7, 64, 1000] {
            let block = b"{\"played\":true},";
            let whole: Vec<u8> = block.repeat(count as usize);
            assert_eq!(
                crc32_repeat(crc32(block), block.len() as u64, count),
                crc32(&whole),
                "{count} blocks"
            );
        }
    }

    #[test]
    fn a_bulk_yields_its_bytes_in_bounded_chunks_with_the_right_crc() {
        let mut bulk = Bulk::new();
        bulk.bytes(b"[".to_vec())
            .repeat(b"0123456789abcdefg".to_vec(), 10_000)
            .repeat(b" ".to_vec(), 3)
            .bytes(b"]".to_vec());
        let mut want = b"[".to_vec();
        want.extend(b"0123456789abcdefg".repeat(10_000));
        want.extend(b"   ]");
        assert_eq!(bulk.len(), want.len() as u64);
        assert!(bulk.chunks().all(|c| !c.is_empty() && c.len() <= CHUNK));
        assert_eq!(bulk.to_vec(), want);
        assert_eq!(bulk.crc32(), crc32(&want));
    }

    #[test]
    fn a_bulk_cut_short_keeps_its_first_bytes() {
        let mut bulk = Bulk::new();
        bulk.bytes(b"[".to_vec())
            .repeat(b"0123456789".to_vec(), 1000)
            .bytes(b"]".to_vec());
        let whole = bulk.to_vec();
        for len in [0, 1, 2, 15, 5000, 10_001, 10_002] {
            let mut cut = bulk.clone();
            cut.truncate(len);
            assert_eq!(cut.to_vec(), whole[..len as usize], "{len}");
            assert_eq!(cut.len(), len);
        }
    }

    #[test]
    fn base64_matches_the_rfc_vectors_however_it_is_fed() {
        for (raw, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(raw.as_bytes()), enc);
            assert_eq!(decode_base64(enc).unwrap(), raw.as_bytes());
            let mut out = Vec::new();
            let mut s = Base64Stream::default();
            for b in raw.as_bytes() {
                s.push(&[*b], &mut out);
            }
            s.finish(&mut out);
            assert_eq!(out, enc.as_bytes());
            assert_eq!(
                Base64Stream::encoded_len(raw.len() as u64),
                enc.len() as u64
            );
        }
        assert_eq!(decode_base64("not base64!"), None);
    }

    #[test]
    fn base64_chunks_reuse_repeated_text_and_stay_right() {
        for (head, block, count) in [
            (0usize, 7usize, 100_000u64),
            (1, 393, 5_000),
            (2, 1, 200_000),
            (1, 30_000, 9),
        ] {
            let mut bulk = Bulk::new();
            bulk.bytes(vec![b'['; head])
                .repeat(
                    (0..block).map(|i| (i % 251) as u8).collect::<Vec<u8>>(),
                    count,
                )
                .bytes(b"]".to_vec());
            let streamed: Vec<u8> = base64_chunks(&bulk).flatten().collect();
            assert_eq!(
                streamed,
                base64(&bulk.to_vec()).into_bytes(),
                "{head} {block} {count}"
            );
            assert!(bulk.chunks().all(|c| c.len() <= CHUNK));
        }
    }

    #[test]
    fn a_base64_value_is_the_same_text_held_or_made_while_sent() {
        // 3 MiB of bytes is 4 MiB of text: over HELD_TEXT_MAX, so made while sent.
        for (block, count, held) in [(1000usize, 48u64, true), (3 << 10, 1 << 10, false)] {
            let mut bytes = Bulk::new();
            bytes.bytes(b"PK".to_vec()).repeat(
                (0..block).map(|i| (i % 253) as u8).collect::<Vec<u8>>(),
                count,
            );
            let value = Base64Value::new(bytes.clone());
            assert_eq!(value.text.is_some(), held, "{block} x {count}");
            let text: Vec<u8> = value.text_chunks().flat_map(Cow::into_owned).collect();
            assert_eq!(text, base64(&bytes.to_vec()).into_bytes());
            assert_eq!(value.text_len(), text.len() as u64);
            assert_eq!(value.bytes(), &bytes);
        }
    }
}
