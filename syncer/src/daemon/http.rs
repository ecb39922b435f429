//! The daemon's HTTP endpoint (hyper, HTTP/1.1): `GET /metrics`,
//! `/healthz`, `/readyz` and `POST /hook` (a push webhook, GitHub-style
//! `X-Hub-Signature-256` HMAC when a secret is set).
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

use super::metrics::{Metrics, CONTENT_TYPE};
use super::Trigger;

pub const MAX_CONNECTIONS: usize = 64;
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
pub const MAX_BODY: usize = 1 << 20;

/// What the handlers share.
pub struct Endpoint {
    pub metrics: Arc<Metrics>,
    pub trigger: mpsc::Sender<Trigger>,
    pub webhook_secret: Option<Vec<u8>>,
    /// Why the daemon is not ready (None: ready), for `/readyz`.
    pub not_ready: Arc<std::sync::RwLock<Option<String>>>,
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

async fn handle(
    endpoint: Arc<Endpoint>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    const PLAIN: &str = "text/plain; charset=utf-8";
    let response = match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => text(StatusCode::OK, CONTENT_TYPE, endpoint.metrics.render()),
        (&Method::GET, "/healthz") => text(StatusCode::OK, PLAIN, "ok\n"),
        (&Method::GET, "/readyz") => {
            let why = endpoint.not_ready.read().ok().and_then(|w| w.clone());
            match why {
                None => text(StatusCode::OK, PLAIN, "ready\n"),
                Some(why) => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    PLAIN,
                    format!("not ready: {why}\n"),
                ),
            }
        }
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
                        let _ = endpoint.trigger.try_send(Trigger::Webhook);
                        text(StatusCode::ACCEPTED, PLAIN, "fetch scheduled\n")
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
}
