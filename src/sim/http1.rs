//! Just enough HTTP/1.1 server, by hand, for the simulated Jellyfin: it must also break the
//! protocol on purpose (drop, reset mid-body, lie about lengths) in ways a framework would
//! prevent. The daemon's own endpoint is served by hyper instead (see `crate::endpoint`):
//! a production port needs a well-kept parser and its timeouts, not this. Tests use it
//! too, for receivers (webhooks) that must misbehave on cue.
//!
//! Requests: request line, headers (bounded), `Content-Length` body (bounded), keep-alive
//! by default on 1.1 and `Connection: close` honoured. No chunked request bodies: nothing
//! that talks to Jellyfin's task API sends one. Anything malformed is a [`ReadError`] and
//! the connection answers 400 and closes; nothing here panics on input.

use std::borrow::Cow;
use std::io::{self, IoSlice};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest request head (request line + headers) accepted.
pub const MAX_HEAD: usize = 16 * 1024;
/// Largest request body accepted.
pub const MAX_BODY: usize = 1024 * 1024;
const MAX_HEADERS: usize = 100;

/// One parsed request.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query without `?`, empty when none.
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Whether the client wants the connection kept after the answer.
    pub keep_alive: bool,
}

impl Request {
    /// The first header of that name (names are case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The first query parameter of that name, compared case-insensitively like ASP.NET.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .split('&')
            .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }
}

/// Why a request could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// The socket failed (reset, timeout); nothing to answer.
    Broken,
    /// Not HTTP/1.x as we accept it; the text says what.
    Malformed(&'static str),
}

/// A connection: the stream plus bytes read past the previous request (pipelining).
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// The `Server:` header of every answer.
    server: &'static str,
}

impl Conn {
    pub fn new(stream: TcpStream, server: &'static str) -> Self {
        Conn {
            stream,
            server,
            buf: Vec::new(),
        }
    }

    /// The next request; `Ok(None)` when the client closed between requests.
    pub async fn read_request(&mut self) -> Result<Option<Request>, ReadError> {
        let head_end = loop {
            if let Some(end) = head_end(&self.buf) {
                break end;
            }
            if self.buf.len() > MAX_HEAD {
                return Err(ReadError::Malformed("request head too large"));
            }
            let n = self
                .stream
                .read_buf(&mut self.buf)
                .await
                .map_err(|_| ReadError::Broken)?;
            if n == 0 {
                return if self.buf.iter().all(u8::is_ascii_whitespace) {
                    Ok(None)
                } else {
                    Err(ReadError::Malformed("connection closed inside a request"))
                };
            }
        };
        if head_end > MAX_HEAD {
            return Err(ReadError::Malformed("request head too large"));
        }
        let head = parse_head(&self.buf[..head_end]).map_err(ReadError::Malformed)?;
        self.buf.drain(..head_end);
        let len = head.content_length;
        while self.buf.len() < len {
            let n = self
                .stream
                .read_buf(&mut self.buf)
                .await
                .map_err(|_| ReadError::Broken)?;
            if n == 0 {
                return Err(ReadError::Malformed("connection closed inside the body"));
            }
        }
        let body: Vec<u8> = self.buf.drain(..len).collect();
        Ok(Some(Request {
            method: head.method,
            path: head.path,
            query: head.query,
            headers: head.headers,
            body,
            keep_alive: head.keep_alive,
        }))
    }

    /// Write a whole answer.
    pub async fn write(&mut self, resp: &Response, close: bool) -> io::Result<()> {
        self.write_prefix(resp, close, resp.body_len()).await?;
        self.stream.flush().await
    }

    /// Write the head (announcing the full length) and half the body, then reset the
    /// connection: a peer that dies mid-answer.
    pub async fn write_half_then_reset(mut self, resp: &Response) -> io::Result<()> {
        self.write_prefix(resp, true, resp.body_len() / 2).await?;
        self.stream.flush().await?;
        // Zero linger turns the close into an RST instead of a FIN.
        self.stream.set_zero_linger()?;
        drop(self.stream);
        Ok(())
    }

    /// The head, then the first `limit` bytes of the body (a streamed one as it is made).
    /// A streamed body's parts go out with the head in few writes, a batch of about
    /// [`WRITE_BATCH`] bytes each, not one write per part: each write is pushed through the
    /// socket, and wakes the reader, on its own.
    async fn write_prefix(&mut self, resp: &Response, close: bool, limit: u64) -> io::Result<()> {
        let mut out = resp.head(self.server, close, resp.body_len());
        let Some(stream) = &resp.stream else {
            out.extend_from_slice(&resp.body[..limit as usize]);
            return self.stream.write_all(&out).await;
        };
        let mut batch = vec![Cow::Owned(out)];
        let mut batched = 0;
        let mut left = limit;
        for chunk in stream.0.chunks() {
            if left == 0 {
                break;
            }
            let chunk = first_bytes(chunk, left);
            left -= chunk.len() as u64;
            batched += chunk.len();
            batch.push(chunk);
            if batched >= WRITE_BATCH {
                write_all_vectored(&mut self.stream, &batch).await?;
                batch.clear();
                batched = 0;
            }
        }
        write_all_vectored(&mut self.stream, &batch).await
    }
}

/// How many bytes of a streamed body are gathered before they are written.
const WRITE_BATCH: usize = 256 * 1024;

/// The first `limit` bytes of `chunk` (all of it when it is shorter).
fn first_bytes(chunk: Cow<'_, [u8]>, limit: u64) -> Cow<'_, [u8]> {
    let take = chunk
        .len()
        .min(usize::try_from(limit).unwrap_or(usize::MAX));
    match chunk {
        Cow::Borrowed(b) => Cow::Borrowed(&b[..take]),
        Cow::Owned(mut v) => {
            v.truncate(take);
            Cow::Owned(v)
        }
    }
}

/// All of `parts`, in as few vectored writes as the socket takes.
async fn write_all_vectored(stream: &mut TcpStream, parts: &[Cow<'_, [u8]>]) -> io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = parts
        .iter()
        .filter(|p| !p.is_empty())
        .map(|p| IoSlice::new(p))
        .collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        let n = stream.write_vectored(rest).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut rest, n);
    }
    Ok(())
}

/// A body made while it is written, for answers too big to hold: the simulated plugin
/// configuration carries export ZIPs of hundreds of megabytes.
pub trait BodySource: Send + Sync + std::fmt::Debug {
    /// Its length in bytes, known before any of it is made (it is the `Content-Length`).
    fn size(&self) -> u64;
    /// The bytes in order, in chunks.
    fn chunks(&self) -> Box<dyn Iterator<Item = Cow<'_, [u8]>> + Send + '_>;
}

/// A shared [`BodySource`]; two are equal when they are the same source.
#[derive(Clone, Debug)]
pub struct Streamed(pub Arc<dyn BodySource>);

impl PartialEq for Streamed {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Streamed {}

/// The first `len` bytes of another source (a truncated answer).
#[derive(Debug)]
struct Prefix {
    inner: Arc<dyn BodySource>,
    len: u64,
}

impl BodySource for Prefix {
    fn size(&self) -> u64 {
        self.len
    }

    fn chunks(&self) -> Box<dyn Iterator<Item = Cow<'_, [u8]>> + Send + '_> {
        let mut left = self.len;
        Box::new(self.inner.chunks().map_while(move |c| {
            if left == 0 {
                return None;
            }
            let c = first_bytes(c, left);
            left -= c.len() as u64;
            Some(c)
        }))
    }
}

/// An answer. Headers besides the standard ones go in `headers`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: Option<&'static str>,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    /// A streamed body; when set, `body` is not sent.
    pub stream: Option<Streamed>,
}

pub const JSON: &str = "application/json; charset=utf-8";
pub const PROBLEM_JSON: &str = "application/problem+json; charset=utf-8";
pub const TEXT: &str = "text/plain; charset=utf-8";
pub const HTML: &str = "text/html; charset=utf-8";

impl Response {
    pub fn new(status: u16, content_type: Option<&'static str>, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            content_type,
            headers: Vec::new(),
            body: body.into(),
            stream: None,
        }
    }

    /// A 200 whose body is made while it is written.
    pub fn streamed(content_type: &'static str, source: Arc<dyn BodySource>) -> Self {
        Response {
            stream: Some(Streamed(source)),
            ..Response::new(200, Some(content_type), Vec::new())
        }
    }

    /// The length of the body that is sent.
    pub fn body_len(&self) -> u64 {
        match &self.stream {
            Some(s) => s.0.size(),
            None => self.body.len() as u64,
        }
    }

    /// The same answer with only the first half of its body (and a length that says so).
    pub fn truncated(mut self) -> Self {
        match self.stream.take() {
            Some(s) => {
                let len = s.0.size() / 2;
                self.stream = Some(Streamed(Arc::new(Prefix { inner: s.0, len })));
            }
            None => {
                let half = self.body.len() / 2;
                self.body.truncate(half);
            }
        }
        self
    }

    pub fn empty(status: u16) -> Self {
        Response::new(status, None, Vec::new())
    }

    pub fn json(body: Vec<u8>) -> Self {
        Response::new(200, Some(JSON), body)
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn head(&self, server: &str, close: bool, content_length: u64) -> Vec<u8> {
        use std::fmt::Write as _;
        // One buffer, written in place (writing into a String cannot fail).
        let mut h = String::with_capacity(256);
        let _ = write!(
            h,
            "HTTP/1.1 {} {}\r\nServer: {server}\r\n",
            self.status,
            reason(self.status)
        );
        if let Some(ct) = self.content_type {
            let _ = write!(h, "Content-Type: {ct}\r\n");
        }
        for (n, v) in &self.headers {
            let _ = write!(h, "{n}: {v}\r\n");
        }
        let _ = write!(h, "Content-Length: {content_length}\r\n");
        if close {
            h.push_str("Connection: close\r\n");
        }
        h.push_str("\r\n");
        h.into_bytes()
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

struct Head {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    content_length: usize,
    keep_alive: bool,
}

/// Index just past the blank line ending the head (CRLF CRLF, or bare LF LF).
fn head_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < buf.len() {
        if buf[i] == b'\n' {
            let rest = &buf[i + 1..];
            if rest.starts_with(b"\r\n") {
                return Some(i + 3);
            }
            if rest.starts_with(b"\n") {
                return Some(i + 2);
            }
        }
        i += 1;
    }
    None
}

fn parse_head(bytes: &[u8]) -> Result<Head, &'static str> {
    let text = std::str::from_utf8(bytes).map_err(|_| "request head is not UTF-8")?;
    // Clients may send stray CRLFs between requests (RFC 9112 §2.2).
    let mut lines = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .skip_while(|l| l.is_empty());
    let request_line = lines.next().ok_or("empty request")?;
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("request line is not METHOD TARGET VERSION");
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err("bad method");
    }
    let http11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        _ => return Err("only HTTP/1.0 and HTTP/1.1"),
    };
    // Absolute form (`http://host/path`) is legal; keep its path.
    let target = match target.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => target,
    };
    if !target.starts_with('/') {
        return Err("target must start with /");
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));

    let mut headers = Vec::new();
    for line in lines.take_while(|l| !l.is_empty()) {
        if line.starts_with([' ', '\t']) {
            return Err("folded header lines are not accepted");
        }
        let (name, value) = line.split_once(':').ok_or("header without colon")?;
        if name.is_empty()
            || name
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err("bad header name");
        }
        headers.push((name.to_string(), value.trim().to_string()));
        if headers.len() > MAX_HEADERS {
            return Err("too many headers");
        }
    }

    let mut content_length: Option<usize> = None;
    let mut connection = String::new();
    for (n, v) in &headers {
        if n.eq_ignore_ascii_case("content-length") {
            let len: usize = v.parse().map_err(|_| "bad Content-Length")?;
            if content_length.is_some_and(|l| l != len) {
                return Err("conflicting Content-Length headers");
            }
            content_length = Some(len);
        } else if n.eq_ignore_ascii_case("transfer-encoding") {
            return Err("Transfer-Encoding request bodies are not supported");
        } else if n.eq_ignore_ascii_case("connection") {
            connection.push_str(&v.to_ascii_lowercase());
            connection.push(',');
        }
    }
    let content_length = content_length.unwrap_or(0);
    if content_length > MAX_BODY {
        return Err("request body too large");
    }
    let has = |tok: &str| connection.split(',').any(|t| t.trim() == tok);
    let keep_alive = if http11 {
        !has("close")
    } else {
        has("keep-alive")
    };
    Ok(Head {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        headers,
        content_length,
        keep_alive,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Head, &'static str> {
        let end = head_end(s.as_bytes()).ok_or("no end")?;
        parse_head(&s.as_bytes()[..end])
    }

    #[test]
    fn parses_a_request() {
        let h = parse("GET /s/a/System/Ping?x=1 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
            .unwrap();
        assert_eq!(
            (h.method.as_str(), h.path.as_str(), h.query.as_str()),
            ("GET", "/s/a/System/Ping", "x=1")
        );
        assert!(!h.keep_alive);
        let h = parse("\r\nPOST http://h:1/x HTTP/1.0\nContent-Length: 3\n\n").unwrap();
        assert_eq!(
            (h.path.as_str(), h.content_length, h.keep_alive),
            ("/x", 3, false)
        );
    }

    #[test]
    fn refuses_malformed_heads() {
        for bad in [
            "GET / HTTP/2.0\r\n\r\n",
            "GET /\r\n\r\n",
            "GET  / HTTP/1.1\r\n\r\n",
            "G3T / HTTP/1.1\r\n\r\n",
            "GET x HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nNoColon\r\n\r\n",
            "GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n",
            "GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            "GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(parse_head(b"GET / HTTP/1.1\r\nA: \xff\r\n\r\n").is_err());
    }

    /// A body of many parts, borrowed and made, longer than a write batch.
    #[derive(Debug)]
    struct Pieces(Vec<Vec<u8>>);

    impl BodySource for Pieces {
        fn size(&self) -> u64 {
            self.0.iter().map(|p| p.len() as u64).sum()
        }

        fn chunks(&self) -> Box<dyn Iterator<Item = Cow<'_, [u8]>> + Send + '_> {
            Box::new(self.0.iter().enumerate().map(|(i, p)| {
                if i % 2 == 0 {
                    Cow::Borrowed(&p[..])
                } else {
                    Cow::Owned(p.clone())
                }
            }))
        }
    }

    /// What a peer reads from `write` (or from a write of the first half and a reset).
    async fn sent(resp: Response, half_then_reset: bool) -> Vec<u8> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut peer = TcpStream::connect(addr).await.unwrap();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            // A reset after the bytes ends the read with an error: what came is kept.
            let _ = peer.read_to_end(&mut got).await;
            got
        });
        let (stream, _) = listener.accept().await.unwrap();
        let mut conn = Conn::new(stream, "Kestrel");
        if half_then_reset {
            conn.write_half_then_reset(&resp).await.unwrap();
        } else {
            conn.write(&resp, true).await.unwrap();
            drop(conn);
        }
        reader.await.unwrap()
    }

    /// An answer's head (as text) and body, when the head came whole.
    fn head_and_body(got: &[u8]) -> Option<(String, &[u8])> {
        let end = got.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
        Some((
            String::from_utf8_lossy(&got[..end]).into_owned(),
            &got[end..],
        ))
    }

    #[tokio::test]
    async fn a_streamed_body_is_sent_whole_and_in_order_across_batches() {
        // 1 + 8 + 70 000 + 1 + 100 000 + ... bytes: parts of every size (an empty one
        // too), over 600 000 bytes in all.
        let mut parts = vec![b"{".to_vec(), b"\"Field\":".to_vec()];
        let mut n = 0u32;
        while parts.iter().map(Vec::len).sum::<usize>() < 600_000 {
            n += 1;
            let len = [100_000, 3, 0, 70_000, 1][n as usize % 5];
            parts.push((0..len).map(|i| (i as u32 * 31 + n) as u8).collect());
        }
        let body: Vec<u8> = parts.concat();
        assert!(body.len() > 2 * WRITE_BATCH);
        let source: Arc<dyn BodySource> = Arc::new(Pieces(parts));
        let resp = Response::streamed(JSON, source);

        let got = sent(resp.clone(), false).await;
        let length = format!("Content-Length: {}\r\n", body.len());
        let (head, got_body) = head_and_body(&got).expect("a whole head");
        assert!(head.contains(&length), "{head}");
        assert!(got_body == body, "the body differs from its parts in order");

        // Half of it, announced whole, then a reset: the peer may lose what it had not
        // read when the reset came, but what it got is the body's start, and no more
        // than half.
        let got = sent(resp.clone(), true).await;
        if let Some((head, part)) = head_and_body(&got) {
            assert!(head.contains(&length), "{head}");
            assert!(part.len() <= body.len() / 2 && *part == body[..part.len()]);
        }
        // The truncated answer: half the body, and a length that says so.
        let got = sent(resp.truncated(), false).await;
        let (head, got_body) = head_and_body(&got).expect("a whole head");
        let half = format!("Content-Length: {}\r\n", body.len() / 2);
        assert!(head.contains(&half), "{head}");
        assert!(got_body == &body[..body.len() / 2]);
    }
}
