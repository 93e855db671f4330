//! The real daemon's endpoint under a flood of connections that never send a request:
//! `/healthz` and the `healthcheck` command still answer, the idle and the slow are closed
//! after the header timeout, at the connection cap the oldest waiting ones are shed, and
//! the memory it takes is printed.

mod common;
mod endpoint_daemon;

use common::bin::{command, run_async};
use endpoint_daemon::{Daemon, Start, closed_within, exchange, get, raise_own_nofile};
use jellyfin_export_scheduler::endpoint::{HEADER_TIMEOUT, cap_for_nofile};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const IDLE: usize = 1000;
const SLOW: usize = 100;
/// A slow client sends one byte of its request head this often.
const SLOW_EVERY: Duration = Duration::from_secs(2);
/// A connection past the header timeout must be closed within this much more.
const CLOSE_MARGIN: Duration = Duration::from_secs(5);

/// Open `n` connections one after the other (so the daemon admits them in this order).
async fn open(addr: SocketAddr, n: usize) -> Vec<(TcpStream, Instant)> {
    let mut v = Vec::with_capacity(n);
    for i in 0..n {
        let s = TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("connection {i} of {n} could not be opened: {e}"));
        v.push((s, Instant::now()));
    }
    v
}

/// A client that sends its request head one byte every [`SLOW_EVERY`] and never finishes
/// it; how long after it connected the server closed it (`None`: not within `limit`).
async fn slow_client(addr: SocketAddr, limit: Duration) -> Option<Duration> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    let opened = Instant::now();
    let head = b"GET /healthz HTTP/1.1\r\nHost: slow.example\r\nUser-Agent: one-byte-at-a-time\r\n";
    for byte in head.iter().cycle() {
        if s.write_all(&[*byte]).await.is_err() || closed_within(&mut s, SLOW_EVERY).await {
            return Some(opened.elapsed());
        }
        if opened.elapsed() > limit {
            return None;
        }
    }
    unreachable!("the head cycles forever")
}

/// `/healthz` over a new connection: its status and how long the answer took.
async fn probe(addr: SocketAddr) -> (u16, Duration) {
    let start = Instant::now();
    let answer = exchange(addr, &get("/healthz"))
        .await
        .unwrap_or_else(|e| panic!("/healthz got no answer under load: {e}"));
    (answer.status, start.elapsed())
}

/// The `healthcheck` command against the daemon's config: exit code, stderr, wall time.
async fn healthcheck(daemon: &Daemon, timeout: &str) -> (Option<i32>, String, Duration) {
    healthcheck_with(&daemon.config, timeout).await
}

/// The `healthcheck` command with `config`: exit code, stderr, wall time.
async fn healthcheck_with(config: &Path, timeout: &str) -> (Option<i32>, String, Duration) {
    let mut cmd = command(["healthcheck", "--timeout", timeout, "--config"]);
    cmd.arg(config);
    let start = Instant::now();
    let out = run_async(cmd).await;
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        start.elapsed(),
    )
}

fn summary(mut d: Vec<Duration>) -> String {
    d.sort();
    format!(
        "min {:.2}s, median {:.2}s, max {:.2}s",
        d[0].as_secs_f64(),
        d[d.len() / 2].as_secs_f64(),
        d[d.len() - 1].as_secs_f64()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_idle_and_a_hundred_slow_connections_do_not_starve_healthz() {
    let hard = raise_own_nofile();
    assert!(
        hard.is_none_or(|h| h >= 4096),
        "this test holds {} connections and needs an open-file hard limit of at least 4096 (it is {hard:?}; raise it with ulimit -Hn)",
        IDLE + SLOW
    );
    let hard = hard.unwrap_or(1 << 20);
    // Started with the common soft limit of 1024: the daemon raises it to the hard one.
    let daemon = Daemon::start(Start {
        nofile: Some((1024, hard)),
        ..Start::default()
    })
    .await;
    let (soft_now, hard_now) = daemon.nofile();
    assert_eq!(
        soft_now,
        hard.to_string(),
        "the daemon raised its soft open-file limit to the hard one ({hard_now})"
    );
    let listening = daemon.log_line("HTTP endpoint listening");
    let cap = listening["max_connections"].as_u64().unwrap() as usize;
    assert!(
        cap >= IDLE + SLOW + 10,
        "with the raised limit the cap ({cap}) holds every connection of this test"
    );
    assert_eq!(
        listening["header_timeout_ms"].as_u64(),
        Some(HEADER_TIMEOUT.as_millis() as u64)
    );
    let addr = daemon.addr;
    let rss_before = daemon.rss_kib();

    let idle = open(addr, IDLE).await;
    let wait_limit = HEADER_TIMEOUT + CLOSE_MARGIN;
    let slow: Vec<_> = (0..SLOW)
        .map(|_| tokio::spawn(slow_client(addr, wait_limit + SLOW_EVERY)))
        .collect();
    let idle_closed: Vec<_> = idle
        .into_iter()
        .map(|(mut s, opened)| {
            tokio::spawn(async move {
                closed_within(&mut s, wait_limit)
                    .await
                    .then(|| opened.elapsed())
            })
        })
        .collect();

    // While all of them are open: /healthz over fresh connections, and the command.
    let mut latencies = Vec::new();
    for _ in 0..6 {
        let (status, took) = probe(addr).await;
        assert_eq!(status, 200, "/healthz under load");
        latencies.push(took);
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    let rss_peak = daemon.rss_kib();
    let (code, stderr, took) = healthcheck(&daemon, "3s").await;
    assert_eq!(code, Some(0), "healthcheck under load: {stderr}");
    println!(
        "under {IDLE} idle + {SLOW} slow connections: /healthz 200 in {} (6 probes); healthcheck exit 0 in {:.2}s",
        summary(latencies.clone()),
        took.as_secs_f64()
    );
    for (i, l) in latencies.iter().enumerate() {
        assert!(
            *l < Duration::from_secs(1),
            "/healthz probe {i} took {l:?} under load, more than 1 s"
        );
    }

    // Every one of them is closed once the header timeout has passed, none much later.
    let mut idle_after = Vec::new();
    for (i, t) in idle_closed.into_iter().enumerate() {
        let after = t.await.unwrap().unwrap_or_else(|| {
            panic!("idle connection {i} was still open {wait_limit:?} after it was opened")
        });
        idle_after.push(after);
    }
    let mut slow_after = Vec::new();
    for (i, t) in slow.into_iter().enumerate() {
        let after = t.await.unwrap().unwrap_or_else(|| {
            panic!("slow client {i} was still connected {wait_limit:?} after it connected")
        });
        slow_after.push(after);
    }
    let early = HEADER_TIMEOUT - Duration::from_millis(500);
    for (what, after) in [("idle", &idle_after), ("slow", &slow_after)] {
        let first = after.iter().min().unwrap();
        assert!(
            *first >= early,
            "a {what} connection was closed after {first:?}, before the {HEADER_TIMEOUT:?} header timeout (the cap was not reached)"
        );
    }
    let rss_after = daemon.rss_kib();
    println!(
        "closed after the {}s header timeout: idle {}; slow {}",
        HEADER_TIMEOUT.as_secs(),
        summary(idle_after),
        summary(slow_after)
    );
    println!(
        "daemon RSS: {} KiB before, {} KiB with {} connections open, {} KiB after they closed",
        rss_before,
        rss_peak,
        IDLE + SLOW,
        rss_after
    );
    assert!(
        rss_peak < 256 * 1024,
        "the daemon's RSS reached {rss_peak} KiB with {} connections: unbounded?",
        IDLE + SLOW
    );
    let (status, _) = probe(addr).await;
    assert_eq!(status, 200);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_cap_the_oldest_waiting_connections_are_shed_and_probes_still_answer() {
    raise_own_nofile();
    // A hard limit of 512 cannot be raised: the cap follows it.
    let daemon = Daemon::start(Start {
        nofile: Some((512, 512)),
        ..Start::default()
    })
    .await;
    let cap = cap_for_nofile(Some(512));
    assert_eq!(
        daemon.log_line("HTTP endpoint listening")["max_connections"].as_u64(),
        Some(cap as u64)
    );
    let addr = daemon.addr;
    let started = Instant::now();
    // The cap, all idle; then a probe, which needs a place: the oldest idle one goes.
    let mut idle = open(addr, cap).await;
    let (status, took) = probe(addr).await;
    assert_eq!(status, 200, "a probe at the cap");
    // Fifty more: each takes the place of the oldest still waiting.
    idle.extend(open(addr, 50).await);
    let (status2, took2) = probe(addr).await;
    assert_eq!(status2, 200, "a probe past the cap");
    println!(
        "cap {cap}: probes answered in {:.3}s and {:.3}s",
        took.as_secs_f64(),
        took2.as_secs_f64()
    );
    // Those shed are the oldest: a prefix of the order they were opened in, at least 51
    // long (one place for the first probe, fifty for the fifty; the probes' own places
    // free up as they close). Each is watched for a second, all at once.
    let watches: Vec<_> = idle
        .into_iter()
        .map(|(mut s, _)| {
            tokio::spawn(async move { (closed_within(&mut s, Duration::from_secs(1)).await, s) })
        })
        .collect();
    let mut closed = Vec::new();
    let mut still_open = Vec::new();
    for w in watches {
        let (c, s) = w.await.unwrap();
        closed.push(c);
        still_open.push(s);
    }
    let shed = closed.iter().take_while(|c| **c).count();
    assert!(
        closed[shed..].iter().all(|c| !c),
        "a connection was shed while an older one kept waiting: {:?}",
        closed.iter().map(|c| u8::from(*c)).collect::<Vec<_>>()
    );
    assert!(
        shed > 50,
        "only {shed} connections were shed to make room for 52 past a cap of {cap}"
    );
    assert!(
        shed < closed.len(),
        "every connection was closed: the newest should still be waiting"
    );
    println!(
        "{shed} of {} idle connections shed, oldest first",
        closed.len()
    );
    assert!(
        started.elapsed() < HEADER_TIMEOUT,
        "this test took longer than the header timeout, so closes may have been timeouts"
    );
    let log = daemon.log_text();
    assert!(
        log.contains("connection cap reached"),
        "shedding is logged:\n{log}"
    );
    drop(still_open);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_says_why_it_fails_within_its_timeout() {
    let daemon = Daemon::start(Start::default()).await;
    let (code, stderr, _) = healthcheck(&daemon, "3s").await;
    assert_eq!(code, Some(0), "{stderr}");
    // The same config, kept after the daemon (and its folder) are gone.
    let keep = tempfile::tempdir().unwrap();
    let config = keep.path().join("config.toml");
    std::fs::copy(&daemon.config, &config).unwrap();
    let port = daemon.addr.port();
    daemon.stop().await;

    // Nothing listens: refused, said at once.
    let (code, stderr, _) = healthcheck_with(&config, "1s").await;
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("unhealthy: cannot reach") && stderr.contains("connection refused"),
        "{stderr}"
    );

    // Something accepts and never answers: no answer within the timeout, said so.
    let silent = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let (code, stderr, took) = healthcheck_with(&config, "1s").await;
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("no answer from") && stderr.contains("within 1s"),
        "{stderr}"
    );
    println!("healthcheck --timeout 1s against a silent port gave up after {took:?}");
    assert!(
        took < Duration::from_secs(3),
        "it took {took:?}, past its 1 s timeout"
    );
    drop(silent);

    // Something answers 503 with a reason: the reason is shown.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 1024];
        let _ = tokio::io::AsyncReadExt::read(&mut s, &mut buf).await;
        let body = "scheduling loop stopped waking for: living-room\n";
        let answer = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(answer.as_bytes()).await.unwrap();
    });
    let (code, stderr, _) = healthcheck_with(&config, "1s").await;
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains(
            "answered 503 Service Unavailable: scheduling loop stopped waking for: living-room"
        ),
        "{stderr}"
    );
    server.await.unwrap();
}
