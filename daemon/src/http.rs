//! The daemon's HTTP endpoints (hyper, HTTP/1.1). The main one: `GET
//! /metrics`, `/healthz`, `/readyz` and `POST /hook` (a push webhook,
//! GitHub-style `X-Hub-Signature-256` HMAC when a secret is set). The
//! status page, on its own address (this machine only unless told
//! otherwise): `GET /` (HTML) and `/status.json`, with an optional bearer
//! token.
//!
//! Bounded against slow or hostile clients: at most [`MAX_CONNECTIONS`]
//! at once (more wait in the kernel's backlog), headers within
//! [`HEADER_TIMEOUT`], a body of at most [`MAX_BODY`] within
//! [`BODY_TIMEOUT`], and an accept error (such as EMFILE) backs off
//! instead of spinning.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use sha2::Sha256;
use tokio::sync::{mpsc, Semaphore};

use crate::metrics::{Metrics, CONTENT_TYPE};
use crate::status::Board;
use crate::Trigger;

pub const MAX_CONNECTIONS: usize = 64;
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
pub const MAX_BODY: usize = 1 << 20;

/// What the handlers share.
pub struct Endpoint {
    pub metrics: Arc<Metrics>,
    /// Each repository follower's trigger, with what a webhook payload is
    /// matched against (its URL's key and branch): a webhook wakes those
    /// its payload names.
    pub triggers: Vec<(crate::hook::Followed, mpsc::Sender<Trigger>)>,
    pub webhook_secret: Option<Vec<u8>>,
    /// What `/readyz` and the status page read.
    pub board: Arc<Board>,
    /// Which routes this endpoint serves.
    pub routes: Routes,
}

/// The routes of an endpoint.
#[derive(Clone, Debug)]
pub enum Routes {
    /// `/metrics`, `/healthz`, `/readyz`, `POST /hook`.
    Main,
    /// `/`, `/status`, `/status.json`; the token, when set, is required.
    Status { token: Option<String> },
}

/// Seconds between reloads of the status page.
pub const STATUS_REFRESH: u32 = 3;

/// Whether the request carries `token`: `Authorization: Bearer TOKEN`, or
/// Basic authentication with TOKEN as the password (what a browser sends
/// after asking). Compared in constant time.
pub fn authorized(token: &str, header: Option<&str>) -> bool {
    use base64::Engine;
    let Some(h) = header.map(str::trim) else {
        return false;
    };
    let given: Vec<u8> = if let Some(t) = h.strip_prefix("Bearer ") {
        t.trim().as_bytes().to_vec()
    } else if let Some(b) = h.strip_prefix("Basic ") {
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(b.trim()) else {
            return false;
        };
        match decoded.iter().position(|c| *c == b':') {
            Some(i) => decoded[i + 1..].to_vec(),
            None => return false,
        }
    } else {
        return false;
    };
    // HMACs of both under a fixed key compared with `verify_slice`: constant
    // time whatever the lengths.
    let mac = |b: &[u8]| {
        let mut m =
            Hmac::<Sha256>::new_from_slice(b"plimsoll-status-token").expect("any key length");
        m.update(b);
        m
    };
    let expected = mac(token.as_bytes()).finalize().into_bytes();
    mac(&given).verify_slice(&expected).is_ok()
}

/// Whether `header` (`sha256=HEX`) is the HMAC-SHA256 of `body` under
/// `secret`; compared in constant time.
pub fn signature_ok(secret: &[u8], body: &[u8], header: Option<&str>) -> bool {
    let Some(hex) = header.and_then(|h| h.trim().strip_prefix("sha256=")) else {
        return false;
    };
    let Some(sig) = decode_hex(hex) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn text(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

/// 200, or 503 with why.
fn readiness(why: Option<String>) -> Response<Full<Bytes>> {
    const PLAIN: &str = "text/plain; charset=utf-8";
    match why {
        None => text(StatusCode::OK, PLAIN, "ready\n"),
        Some(why) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            PLAIN,
            format!("not ready: {why}\n"),
        ),
    }
}

async fn handle(
    endpoint: Arc<Endpoint>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    const PLAIN: &str = "text/plain; charset=utf-8";
    if let Routes::Status { token } = &endpoint.routes {
        return Ok(status_page(&endpoint, token.as_deref(), &req));
    }
    let response = match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => text(StatusCode::OK, CONTENT_TYPE, endpoint.metrics.render()),
        (&Method::GET, "/healthz") => text(StatusCode::OK, PLAIN, "ok\n"),
        (&Method::GET, "/readyz") => readiness(endpoint.board.not_ready()),
        (&Method::GET, "/readyz/replica") => readiness(endpoint.board.replica_not_ready()),
        (&Method::POST, "/hook") => {
            let signature = req
                .headers()
                .get("x-hub-signature-256")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body = tokio::time::timeout(
                BODY_TIMEOUT,
                Limited::new(req.into_body(), MAX_BODY).collect(),
            )
            .await;
            match body {
                Err(_) => text(StatusCode::REQUEST_TIMEOUT, PLAIN, "body too slow\n"),
                Ok(Err(_)) => text(StatusCode::PAYLOAD_TOO_LARGE, PLAIN, "body too large\n"),
                Ok(Ok(body)) => {
                    let body = body.to_bytes();
                    let ok = match &endpoint.webhook_secret {
                        Some(s) => signature_ok(s, &body, signature.as_deref()),
                        None => true,
                    };
                    if ok {
                        let keys: Vec<crate::hook::Followed> =
                            endpoint.triggers.iter().map(|(k, _)| k.clone()).collect();
                        let woken = crate::hook::woken(&keys, &body);
                        for &i in &woken {
                            let _ = endpoint.triggers[i].1.try_send(Trigger::Webhook);
                        }
                        if woken.is_empty() {
                            text(
                                StatusCode::ACCEPTED,
                                PLAIN,
                                "no followed repository is the payload's: nothing to fetch\n",
                            )
                        } else {
                            text(
                                StatusCode::ACCEPTED,
                                PLAIN,
                                format!(
                                    "fetch scheduled ({} of {} repositories)\n",
                                    woken.len(),
                                    keys.len()
                                ),
                            )
                        }
                    } else {
                        text(StatusCode::UNAUTHORIZED, PLAIN, "bad signature\n")
                    }
                }
            }
        }
        _ => text(StatusCode::NOT_FOUND, PLAIN, "not found\n"),
    };
    Ok(response)
}

/// The status page's routes.
fn status_page(
    endpoint: &Endpoint,
    token: Option<&str>,
    req: &Request<Incoming>,
) -> Response<Full<Bytes>> {
    const PLAIN: &str = "text/plain; charset=utf-8";
    if let Some(token) = token {
        let header = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if !authorized(token, header) {
            let mut r = text(StatusCode::UNAUTHORIZED, PLAIN, "a token is required\n");
            r.headers_mut().insert(
                hyper::header::WWW_AUTHENTICATE,
                hyper::header::HeaderValue::from_static(
                    "Basic realm=\"plimsoll\", charset=\"UTF-8\"",
                ),
            );
            return r;
        }
    }
    let mut r = match (req.method(), req.uri().path()) {
        (&Method::GET, "/" | "/status") => text(
            StatusCode::OK,
            "text/html; charset=utf-8",
            crate::status::to_html(&endpoint.board.snapshot(), STATUS_REFRESH),
        ),
        (&Method::GET, "/status.json") => text(
            StatusCode::OK,
            "application/json",
            crate::status::to_json(&endpoint.board.snapshot()),
        ),
        (&Method::GET, _) => text(StatusCode::NOT_FOUND, PLAIN, "not found\n"),
        _ => text(StatusCode::METHOD_NOT_ALLOWED, PLAIN, "read only\n"),
    };
    // Read only, never framed, never cached, no script.
    let h = r.headers_mut();
    for (k, v) in [
        (
            "content-security-policy",
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ),
        ("x-content-type-options", "nosniff"),
        ("cache-control", "no-store"),
        ("referrer-policy", "no-referrer"),
    ] {
        h.insert(k, hyper::header::HeaderValue::from_static(v));
    }
    r
}

/// Binds `addr`; the returned listener is then served by [`serve`].
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

/// Serves the endpoint until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, endpoint: Arc<Endpoint>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut backoff = Duration::from_millis(10);
    loop {
        // Take a slot before accepting: excess clients wait in the backlog.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => {
                backoff = Duration::from_millis(10);
                stream
            }
            Err(e) => {
                // EMFILE, ENFILE, ENOBUFS…: wait for resources to come back.
                tracing::warn!("accept failed ({e}); retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let endpoint = endpoint.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(endpoint.clone(), req));
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            // A whole exchange is bounded too (a client that never reads).
            let _ = tokio::time::timeout(HEADER_TIMEOUT + BODY_TIMEOUT + BODY_TIMEOUT, conn).await;
            drop(slot);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_hmac_sha256_of_the_body() {
        // RFC 4231, test case 2.
        let hex = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        let body = b"what do ya want for nothing?";
        assert!(signature_ok(b"Jefe", body, Some(&format!("sha256={hex}"))));
        assert!(signature_ok(
            b"Jefe",
            body,
            Some(&format!("sha256={}", hex.to_uppercase()))
        ));
        assert!(!signature_ok(
            b"Jefe",
            b"what do ya want for something?",
            Some(&format!("sha256={hex}"))
        ));
        assert!(!signature_ok(
            b"Jefe",
            body,
            Some(&format!("sha256={}", &hex[..62]))
        ));
        assert!(!signature_ok(b"Jefe", body, Some("sha1=abc")));
        assert!(!signature_ok(b"Jefe", b"x", None));
    }

    #[test]
    fn the_status_token_is_a_bearer_token_or_a_basic_password() {
        use base64::Engine;
        let basic = |s: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(s)
            )
        };
        assert!(authorized("t0k", Some("Bearer t0k")));
        assert!(authorized("t0k", Some(&basic("anyone:t0k"))));
        assert!(!authorized("t0k", Some("Bearer t0")));
        assert!(!authorized("t0k", Some("Bearer t0kk")));
        assert!(!authorized("t0k", Some(&basic("t0k"))));
        assert!(!authorized("t0k", Some("t0k")));
        assert!(!authorized("t0k", None));
        assert!(!authorized("t0k", Some("Basic !!!")));
    }
}
