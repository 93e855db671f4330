//! One request through hyper: the checks every request passes (method, body, target
//! length, token), the route's answer, and the headers every answer carries.

use super::Sources;
use super::conns::Answering;
use super::limits::MAX_TARGET_BYTES;
use super::routes::{Reply, Route};
use super::token::{ApiToken, REALM};
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

/// The status page's policy, on every answer: nothing but the page's own inline style may
/// load or run (no scripts, images, fonts, forms), and no other site may frame it.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Headers on every answer: the policy above, no type sniffing, no framing (for browsers
/// older than `frame-ancestors`), no referrer, and no caching (everything is live state).
const EVERY_ANSWER: [(header::HeaderName, &str); 5] = [
    (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::CACHE_CONTROL, "no-store"),
];

/// What every request is answered from.
pub(super) struct App {
    pub sources: Sources,
    pub token: Option<ApiToken>,
}

impl App {
    /// The whole answer; `answering` marks the connection busy until the body is written.
    pub async fn answer(
        &self,
        request: Request<Incoming>,
        answering: Answering,
    ) -> Response<AnswerBody> {
        let reply = self.reply(&request).await;
        tracing::debug!(
            method = %request.method(),
            path = request.uri().path(),
            status = reply.status,
            "HTTP request"
        );
        response(reply, answering)
    }

    async fn reply(&self, request: &Request<Incoming>) -> Reply {
        // A body is never read: the connection closes after the answer instead.
        let has_body = !request.body().is_end_stream();
        let method = request.method();
        if method != Method::GET && method != Method::HEAD {
            let reply = Reply::text(405, "read-only: only GET and HEAD are served\n")
                .with_header(header::ALLOW, "GET, HEAD");
            return if has_body {
                reply.with_header(header::CONNECTION, "close")
            } else {
                reply
            };
        }
        if has_body {
            return Reply::text(413, "this endpoint takes no request body\n")
                .with_header(header::CONNECTION, "close");
        }
        let target = request.uri().path_and_query().map_or("", |pq| pq.as_str());
        if target.len() > MAX_TARGET_BYTES {
            return Reply::text(
                414,
                format!("the request target is longer than {MAX_TARGET_BYTES} bytes\n"),
            );
        }
        let route = Route::of(request.uri().path());
        if route.guarded()
            && let Some(token) = &self.token
        {
            let authorization = request.headers().get(header::AUTHORIZATION);
            if !token.admits(authorization.map(HeaderValue::as_bytes)) {
                return unauthorized();
            }
        }
        let query = request.uri().query().unwrap_or("");
        route.answer(query, &self.sources).await
    }
}

/// 401 with both challenges: Bearer for Prometheus and scripts, Basic so that a browser
/// asks for a login (any user name, the token as the password).
fn unauthorized() -> Reply {
    Reply::text(
        401,
        "this needs the endpoint's API token ([daemon] api_token_file): send Authorization: Bearer <token>\n",
    )
    .with_header(header::WWW_AUTHENTICATE, format!("Bearer realm=\"{REALM}\""))
    .with_header(
        header::WWW_AUTHENTICATE,
        format!("Basic realm=\"{REALM}\", charset=\"UTF-8\""),
    )
}

fn response(reply: Reply, answering: Answering) -> Response<AnswerBody> {
    let mut response = Response::new(AnswerBody {
        data: Bytes::from(reply.body),
        _answering: answering,
    });
    *response.status_mut() =
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(reply.content_type),
    );
    for (name, value) in EVERY_ANSWER {
        headers.insert(name, HeaderValue::from_static(value));
    }
    for (name, value) in reply.headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.append(name, value);
        }
    }
    response
}

/// An answer's body, whole, and the mark that its connection is answering: hyper drops
/// the body once it has written it (or at once for `HEAD`), and the connection waits for
/// its next request from then.
pub(super) struct AnswerBody {
    data: Bytes,
    _answering: Answering,
}

impl Body for AnswerBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.data.is_empty() {
            return Poll::Ready(None);
        }
        Poll::Ready(Some(Ok(Frame::data(std::mem::take(&mut this.data)))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.data.len() as u64)
    }
}
