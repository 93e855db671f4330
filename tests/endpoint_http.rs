//! The real daemon's endpoint, byte by byte: the limits (head size, header count, request
//! target), methods and bodies (405/413, never a hang), HTTP/1.0 and keep-alive, HEAD on
//! every route, the headers every answer carries, and `[daemon] api_token_file`.

mod common;
mod endpoint_daemon;

use base64::Engine;
use common::bin::{command, describe, run_async};
use endpoint_daemon::{Daemon, Start, Wire, exchange, get};
use jellyfin_export_scheduler::endpoint::{
    CONTENT_SECURITY_POLICY, MAX_HEAD_BYTES, MAX_HEADERS, MAX_TARGET_BYTES,
};
use std::time::Duration;

/// Every route, and one that is not.
const ROUTES: [&str; 7] = [
    "/",
    "/healthz",
    "/readyz",
    "/metrics",
    "/api/v1/servers",
    "/api/v1/servers/s/history",
    "/nope",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_methods_and_bodies_are_answered_never_left_hanging() {
    let daemon = Daemon::start(Start::default()).await;
    let addr = daemon.addr;
    let ask = |request: Vec<u8>| async move {
        exchange(addr, &request).await.unwrap_or_else(|e| {
            panic!(
                "{:?}: {e}",
                String::from_utf8_lossy(&request[..60.min(request.len())])
            )
        })
    };

    // The head: at most MAX_HEAD_BYTES, at most MAX_HEADERS fields.
    let filler = "x".repeat(MAX_HEAD_BYTES);
    let a =
        ask(format!("GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: {filler}\r\n\r\n").into_bytes())
            .await;
    assert_eq!(a.status, 431, "a head over {MAX_HEAD_BYTES} bytes");
    let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: v\r\n")).collect();
    let a = ask(format!("GET /healthz HTTP/1.1\r\nHost: t\r\n{many}\r\n").into_bytes()).await;
    assert_eq!(a.status, 431, "more than {MAX_HEADERS} header fields");
    let some: String = (0..MAX_HEADERS - 2)
        .map(|i| format!("X-{i}: v\r\n"))
        .collect();
    let a = ask(
        format!("GET /healthz HTTP/1.1\r\nHost: t\r\n{some}Connection: close\r\n\r\n").into_bytes(),
    )
    .await;
    assert_eq!(a.status, 200, "{MAX_HEADERS} header fields are fine");

    // The request line: a target over MAX_TARGET_BYTES is 414, one inside the head limit.
    let long = format!("/healthz?{}", "q".repeat(MAX_TARGET_BYTES));
    let a = ask(get(&long)).await;
    assert_eq!(a.status, 414, "{}", a.text());
    assert_eq!(
        ask(get(&format!("/healthz?{}", "q".repeat(100))))
            .await
            .status,
        200
    );

    // Methods other than GET/HEAD: 405 with Allow, with or without a body.
    for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
        let a = ask(
            format!("{method} /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                .into_bytes(),
        )
        .await;
        assert_eq!(a.status, 405, "{method}");
        assert_eq!(a.header("allow"), Some("GET, HEAD"), "{method}");
    }
    // A body is never read: 405 (wrong method) or 413 (GET), and the connection closes.
    for (request, status) in [
        (
            "POST /api/v1/servers HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
            405,
        ),
        (
            "POST /api/v1/servers HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n",
            405,
        ),
        (
            "GET /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
            413,
        ),
        (
            "GET /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n",
            413,
        ),
        (
            "GET /healthz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
            413,
        ),
        (
            "GET /healthz HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n",
            413,
        ),
    ] {
        let mut s = Wire::connect(addr).await.unwrap();
        s.send(request.as_bytes()).await.unwrap();
        let a = s
            .answer(false)
            .await
            .unwrap_or_else(|e| panic!("{request:?}: {e}"));
        assert_eq!(a.status, status, "{request:?}: {}", a.text());
        assert!(
            s.closed_within(Duration::from_secs(2)).await,
            "{request:?}: the connection stayed open after the answer"
        );
    }
    // Not HTTP at all: 400, closed.
    let mut s = Wire::connect(addr).await.unwrap();
    s.send(b"HELLO\x01\x02 there\r\n\r\n").await.unwrap();
    assert_eq!(s.answer(false).await.unwrap().status, 400);
    assert!(s.closed_within(Duration::from_secs(2)).await);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_1_0_keep_alive_and_head_on_every_route() {
    let daemon = Daemon::start(Start::default()).await;
    let addr = daemon.addr;

    // HTTP/1.0 without keep-alive: the answer, then the server closes.
    let mut s = Wire::connect(addr).await.unwrap();
    s.send(b"GET /healthz HTTP/1.0\r\n\r\n").await.unwrap();
    let a = s.answer(false).await.unwrap();
    assert_eq!((a.status, a.text().as_str()), (200, "ok\n"));
    assert!(
        s.closed_within(Duration::from_secs(2)).await,
        "HTTP/1.0 closes"
    );
    // HTTP/1.0 with keep-alive: two answers on one connection.
    let mut s = Wire::connect(addr).await.unwrap();
    for _ in 0..2 {
        s.send(b"GET /readyz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .await
            .unwrap();
        let a = s.answer(false).await.unwrap();
        assert_eq!((a.status, a.text().as_str()), (200, "ready\n"));
    }
    // HTTP/1.1: keep-alive by default, pipelined requests answered in order.
    let mut s = Wire::connect(addr).await.unwrap();
    s.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\nGET /readyz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(s.answer(false).await.unwrap().text(), "ok\n");
    assert_eq!(s.answer(false).await.unwrap().text(), "ready\n");
    s.send(&get("/api/v1/servers")).await.unwrap();
    let a = s.answer(false).await.unwrap();
    assert_eq!(a.status, 200);
    assert!(
        s.closed_within(Duration::from_secs(2)).await,
        "Connection: close honoured"
    );

    // HEAD: GET's status and headers, no body, on every route.
    for path in ROUTES {
        let got = exchange(addr, &get(path)).await.unwrap();
        let head = format!("HEAD {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        let mut s = Wire::connect(addr).await.unwrap();
        s.send(head.as_bytes()).await.unwrap();
        let headed = s.answer(true).await.unwrap();
        assert_eq!(headed.status, got.status, "HEAD {path}");
        assert_eq!(
            headed.header("content-type"),
            got.header("content-type"),
            "HEAD {path}"
        );
        let len: usize = headed.header("content-length").unwrap().parse().unwrap();
        // The page and the metrics carry the time, so their lengths may differ by a digit.
        assert!(
            len.abs_diff(got.body.len()) <= 8,
            "HEAD {path}: {len} vs {}",
            got.body.len()
        );
        if let Err(e) = s.closes_without_more(Duration::from_secs(2)).await {
            panic!("HEAD {path}: nothing may follow the head but the close: {e}");
        }
    }
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_carries_the_security_headers() {
    let daemon = Daemon::start(Start::default()).await;
    assert!(CONTENT_SECURITY_POLICY.contains("frame-ancestors 'none'"));
    assert!(CONTENT_SECURITY_POLICY.contains("default-src 'none'"));
    assert!(CONTENT_SECURITY_POLICY.contains("style-src 'unsafe-inline'"));
    assert!(
        !CONTENT_SECURITY_POLICY.contains("script-src"),
        "no scripts at all"
    );
    let post = b"POST / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".to_vec();
    let mut requests: Vec<Vec<u8>> = ROUTES.iter().map(|p| get(p)).collect();
    requests.push(post);
    for request in requests {
        let a = exchange(daemon.addr, &request).await.unwrap();
        let what =
            String::from_utf8_lossy(&request[..request.iter().position(|b| *b == b'\r').unwrap()])
                .into_owned();
        assert_eq!(
            a.header("x-content-type-options"),
            Some("nosniff"),
            "{what}"
        );
        assert_eq!(
            a.header("content-security-policy"),
            Some(CONTENT_SECURITY_POLICY),
            "{what}"
        );
        assert_eq!(a.header("cache-control"), Some("no-store"), "{what}");
        assert_eq!(a.header("x-frame-options"), Some("DENY"), "{what}");
        assert_eq!(a.header("referrer-policy"), Some("no-referrer"), "{what}");
    }
    // The page fits its policy: no script, no external asset, its style inline.
    let page = exchange(daemon.addr, &get("/")).await.unwrap().text();
    assert!(page.contains("<style>") && !page.contains("<script") && !page.contains("src="));
    daemon.stop().await;
}

const TOKEN: &str = "6f1c0e2d9b8a7f3e4d5c6b7a8f9e0d1c2b3a4f5e6d7c8b9a";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_token_guards_everything_but_the_probes() {
    // The token is a credential: ${CREDENTIALS_DIRECTORY}/endpoint-token, as under systemd.
    let creds = tempfile::tempdir().unwrap();
    std::fs::write(creds.path().join("endpoint-token"), format!("{TOKEN}\n")).unwrap();
    let daemon = Daemon::start(Start {
        extra_daemon: "api_token_file = \"${CREDENTIALS_DIRECTORY}/endpoint-token\"",
        envs: vec![("CREDENTIALS_DIRECTORY", creds.path().display().to_string())],
        ..Start::default()
    })
    .await;
    let addr = daemon.addr;
    let with = |path: &str, authorization: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: t\r\nAuthorization: {authorization}\r\nConnection: close\r\n\r\n")
            .into_bytes()
    };
    let basic = |userpass: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(userpass)
        )
    };
    for path in ["/healthz", "/readyz"] {
        assert_eq!(
            exchange(addr, &get(path)).await.unwrap().status,
            200,
            "{path} stays open"
        );
    }
    for path in [
        "/",
        "/metrics",
        "/api/v1/servers",
        "/api/v1/servers/s/history",
        "/nope",
    ] {
        let a = exchange(addr, &get(path)).await.unwrap();
        assert_eq!(a.status, 401, "{path} without the token");
        let challenges = a.all("www-authenticate");
        assert!(
            challenges.iter().any(|c| c.starts_with("Bearer realm=")),
            "{path}: {challenges:?}"
        );
        assert!(
            challenges.iter().any(|c| c.starts_with("Basic realm=")),
            "{path}: {challenges:?}"
        );
        for wrong in [
            format!("Bearer {}", &TOKEN[1..]),
            format!("Bearer {TOKEN}0"),
            "Bearer ".to_owned(),
            basic(&format!("{TOKEN}:x")),
            TOKEN.to_owned(),
        ] {
            let a = exchange(addr, &with(path, &wrong)).await.unwrap();
            assert_eq!(a.status, 401, "{path} with {wrong:?}");
            assert!(!a.text().contains(TOKEN));
        }
        let want = if path == "/nope" { 404 } else { 200 };
        let a = exchange(addr, &with(path, &format!("Bearer {TOKEN}")))
            .await
            .unwrap();
        assert_eq!(a.status, want, "{path} with the Bearer token");
        let a = exchange(addr, &with(path, &basic(&format!("me:{TOKEN}"))))
            .await
            .unwrap();
        assert_eq!(a.status, want, "{path} with the token as a Basic password");
    }
    // The healthcheck asks the open /healthz and reads no secret: it works without them.
    let mut cmd = command(["healthcheck", "--config"]);
    cmd.arg(&daemon.config);
    let out = run_async(cmd).await;
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    // A new token in the file takes a restart; a reload says so and keeps the old one.
    const NEW: &str = "a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7";
    std::fs::write(creds.path().join("endpoint-token"), NEW).unwrap();
    let mut cmd = command(["reload", "--config"]);
    cmd.arg(&daemon.config)
        .env("CREDENTIALS_DIRECTORY", creds.path());
    let out = run_async(cmd).await;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(
        said.contains("api_token_file changed but needs a restart"),
        "{said}"
    );
    let bearer = |t: &str| with("/metrics", &format!("Bearer {t}"));
    assert_eq!(exchange(addr, &bearer(TOKEN)).await.unwrap().status, 200);
    assert_eq!(exchange(addr, &bearer(NEW)).await.unwrap().status, 401);
    // Neither token is ever in the log or the reload's output.
    let log = daemon.log_text();
    assert!(daemon.log_line("HTTP endpoint listening")["token"] == true);
    for t in [TOKEN, NEW] {
        assert!(!log.contains(t) && !said.contains(t));
    }
    daemon.stop().await;
}
