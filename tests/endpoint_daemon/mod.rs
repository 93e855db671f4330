//! The real daemon with its endpoint on a free loopback port (started through
//! `tests/common`, optionally under `prlimit`), and a raw HTTP/1 client that sends exactly
//! the bytes a test writes: for tests/endpoint_load.rs and tests/endpoint_http.rs.

#![allow(dead_code)] // each test file uses part of it

use crate::common::bin::{self, command, signal};
use crate::common::proc;
use crate::common::wait::wait_until_async;
use crate::common::{KEY, free_port};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A config with the endpoint on `port` and one server that is never due during a test
/// (and whose address nothing listens on), plus `extra_daemon` lines in `[daemon]`.
pub fn write_config(dir: &Path, port: u16, extra_daemon: &str) -> PathBuf {
    let config = dir.join("config.toml");
    let text = format!(
        "[daemon]\nstate_dir = \"{}\"\nlisten = \"127.0.0.1:{port}\"\nlog_format = \"json\"\nlog_level = \"debug\"\n{extra_daemon}\n\n\
         [[servers]]\nname = \"s\"\nurl = \"http://127.0.0.1:9\"\napi_key = \"{KEY}\"\nschedule = \"0 0 3 1 1 *\"\ntimezone = \"UTC\"\n",
        dir.join("state").display()
    );
    std::fs::write(&config, text).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    config
}

/// How the daemon is started.
#[derive(Default)]
pub struct Start<'a> {
    /// `RLIMIT_NOFILE` (soft, hard) to start it with, through util-linux's `prlimit`.
    pub nofile: Option<(u64, u64)>,
    pub extra_daemon: &'a str,
    pub envs: Vec<(&'a str, String)>,
}

/// A running daemon (killed if the test ends without stopping it) and its folder.
pub struct Daemon {
    pub process: bin::Daemon,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub addr: SocketAddr,
}

impl Daemon {
    /// Start it and wait (at most 20 s) until `/readyz` answers 200.
    pub async fn start(how: Start<'_>) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = write_config(dir.path(), port, how.extra_daemon);
        let mut cmd = match how.nofile {
            Some((soft, hard)) => bin::command_with_nofile::<&str>(soft, hard, []),
            None => command::<&str>([]),
        };
        cmd.args(["run", "--config"])
            .arg(&config)
            .envs(how.envs.iter().map(|(k, v)| (*k, v.as_str())));
        let process = bin::Daemon::spawn(&mut cmd, &dir.path().join("daemon.log"));
        let daemon = Daemon {
            process,
            dir,
            config,
            addr: ([127, 0, 0, 1], port).into(),
        };
        let ready = b"GET /readyz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
        wait_until_async(
            Duration::from_secs(20),
            "the daemon's /readyz answers 200",
            || async {
                exchange(daemon.addr, ready)
                    .await
                    .is_ok_and(|a| a.status == 200)
            },
        )
        .await;
        daemon
    }

    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    pub fn log_text(&self) -> String {
        self.process.log()
    }

    /// The JSON log line whose message starts with `message`.
    pub fn log_line(&self, message: &str) -> serde_json::Value {
        let log = self.log_text();
        log.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| {
                v["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with(message))
            })
            .unwrap_or_else(|| panic!("no log line {message:?} in:\n{log}"))
    }

    /// Its resident memory, from /proc, in KiB.
    pub fn rss_kib(&self) -> u64 {
        proc::status_value(self.pid(), "VmRSS")
    }

    /// Its `RLIMIT_NOFILE` (soft, hard) as /proc shows it.
    pub fn nofile(&self) -> (String, String) {
        proc::open_file_limits(self.pid())
    }

    /// SIGTERM, and the exit status must be 0 within 15 s.
    pub async fn stop(mut self) {
        signal(self.pid(), "TERM");
        let code = self.process.wait_exit(Duration::from_secs(15)).await;
        assert_eq!(code, Some(0), "exit status; log:\n{}", self.log_text());
    }
}

/// One HTTP answer as read off the wire.
#[derive(Debug)]
pub struct Answer {
    /// The status line, e.g. `HTTP/1.1 200 OK`.
    pub status_line: String,
    pub status: u16,
    /// Names in lowercase, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// How long reading one answer may take before the test fails.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// A client connection and the bytes read past the last answer (pipelined answers).
pub struct Wire {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Wire {
    pub async fn connect(addr: SocketAddr) -> Result<Wire, String> {
        let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        Ok(Wire {
            stream,
            buf: Vec::new(),
        })
    }

    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.stream
            .write_all(bytes)
            .await
            .map_err(|e| e.to_string())
    }

    /// Read one answer; `head` is whether it answers a HEAD (no body follows). An error
    /// when the server closes first or says nothing within [`ANSWER_WITHIN`].
    pub async fn answer(&mut self, head: bool) -> Result<Answer, String> {
        tokio::time::timeout(ANSWER_WITHIN, self.answer_inner(head))
            .await
            .map_err(|_| format!("no complete answer within {ANSWER_WITHIN:?}"))?
    }

    /// At least `n` bytes in the buffer, or why not.
    async fn fill(&mut self, n: usize, inside: &str) -> Result<(), String> {
        while self.buf.len() < n {
            let mut chunk = [0u8; 16384];
            let got = self
                .stream
                .read(&mut chunk)
                .await
                .map_err(|e| e.to_string())?;
            if got == 0 {
                return Err(format!(
                    "the server closed the connection inside {inside} ({} bytes read)",
                    self.buf.len()
                ));
            }
            self.buf.extend_from_slice(&chunk[..got]);
        }
        Ok(())
    }

    async fn answer_inner(&mut self, head: bool) -> Result<Answer, String> {
        let end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            self.fill(self.buf.len() + 1, "a head").await?;
        };
        let head_text = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        let mut lines = head_text.split("\r\n");
        let status_line = lines.next().unwrap_or_default().to_owned();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("not a status line: {status_line:?}"))?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let len: usize = match head {
            true => 0,
            false => headers
                .iter()
                .find(|(n, _)| n == "content-length")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0),
        };
        self.fill(end + len, "a body").await?;
        let body = self.buf[end..end + len].to_vec();
        self.buf.drain(..end + len);
        Ok(Answer {
            status_line,
            status,
            headers,
            body,
        })
    }

    /// Whether the server closes the connection within `within` (see [`closed_within`]).
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        closed_within(&mut self.stream, within).await
    }

    /// The server closes the connection within `within` and sends nothing more before.
    pub async fn closes_without_more(&mut self, within: Duration) -> Result<(), String> {
        if !self.buf.is_empty() {
            return Err(format!("{} more bytes followed the answer", self.buf.len()));
        }
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout(within, self.stream.read(&mut chunk)).await {
            Err(_) => Err(format!("still open {within:?} after the answer")),
            Ok(Ok(0)) | Ok(Err(_)) => Ok(()),
            Ok(Ok(n)) => Err(format!(
                "{n} more bytes followed the answer: {:?}",
                String::from_utf8_lossy(&chunk[..n])
            )),
        }
    }
}

/// A new connection, `request` written as is, one answer read.
pub async fn exchange(addr: SocketAddr, request: &[u8]) -> Result<Answer, String> {
    let mut wire = Wire::connect(addr).await?;
    wire.send(request).await?;
    wire.answer(request.starts_with(b"HEAD ")).await
}

/// Whether the server closes `stream` (EOF or reset) within `within`; what it sends
/// before that is read and dropped.
pub async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let wait = async {
        let mut chunk = [0u8; 4096];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(within, wait).await.is_ok()
}

/// A GET of `path` with `Connection: close`.
pub fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").into_bytes()
}

/// Raise this test process's own open-file limit to its hard limit (it holds many client
/// sockets) and return the hard limit.
pub fn raise_own_nofile() -> Option<u64> {
    jellyfin_export_scheduler::endpoint::raise_nofile_limit()
        .expect("the test may raise its own soft open-file limit to the hard one");
    jellyfin_export_scheduler::endpoint::nofile_limit()
}
