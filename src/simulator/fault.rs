//! Injected misbehaviour: the failures a real CertCentral (or the network and
//! proxies in front of it) produces, on demand, so a client's error handling
//! is tested against real HTTP rather than mocks.

use std::io;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use futures_util::stream;

use super::error::error_body;
use super::server::ConnTag;

/// One fault, consumed by exactly one upcoming request (FIFO). Queue them with
/// [`super::Simulator::push_fault`] (status-changes) or
/// [`super::Simulator::push_cancel_fault`] (cancel).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status, extra headers and raw body instead of the real
    /// answer. Invalid header names or values are skipped, an invalid status
    /// becomes 500.
    Respond {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// Accept the request, then never answer: after the duration (or when
    /// the server stops) the connection is closed without a single byte of
    /// response, which is what a client with a timeout must cope with.
    Hang(Duration),
    /// Send the headers with a `Content-Length` larger than the body, send
    /// the first half of the real answer, then drop the connection.
    Truncated,
    /// Send the real answer (status and body as it would have been), one
    /// byte every `interval`: a client without a total deadline waits for it.
    SlowBody(Duration),
}

impl Fault {
    /// An error answer in upstream's shape with the given HTTP status and
    /// error code, e.g. `Fault::status(503, "service_unavailable")`.
    pub fn status(code: u16, error_code: &str) -> Fault {
        Fault::Respond {
            status: code,
            headers: vec![(
                String::from("Content-Type"),
                String::from("application/json"),
            )],
            body: String::from_utf8_lossy(&error_body(
                error_code,
                &format!("Simulated failure ({error_code})."),
            ))
            .into_owned(),
        }
    }

    /// Upstream's rate-limit answer: 429 `request_limit_exceeded`, for one
    /// request, whatever the real limits say (the simulator also enforces
    /// those, see [`super::RateLimits`]). Upstream promises no
    /// `Retry-After`; pass `Some(secs)` to test that a client honours one
    /// when it does come.
    pub fn rate_limited(retry_after: Option<u64>) -> Fault {
        let mut headers = vec![(
            String::from("Content-Type"),
            String::from("application/json"),
        )];
        if let Some(secs) = retry_after {
            headers.push((String::from("Retry-After"), secs.to_string()));
        }
        Fault::Respond {
            status: 429,
            headers,
            body: String::from_utf8_lossy(&error_body(
                "request_limit_exceeded",
                super::limits::LIMIT_MESSAGE,
            ))
            .into_owned(),
        }
    }

    /// An HTML error page, as a load balancer or proxy in front of the API
    /// returns it: the client must not try to read it as an API error.
    pub fn html(status: u16) -> Fault {
        Fault::Respond {
            status,
            headers: vec![(
                String::from("Content-Type"),
                String::from("text/html; charset=utf-8"),
            )],
            body: format!(
                "<!DOCTYPE html>\n<html><head><title>{status} Error</title></head>\
                 <body><h1>{status} Error</h1><p>The server is temporarily unable to service \
                 your request.</p></body></html>\n"
            ),
        }
    }
}

/// A normal answer: JSON with the given status, or an empty 204.
pub(crate) fn json_response(status: u16, body: Vec<u8>) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if code == StatusCode::NO_CONTENT {
        return code.into_response();
    }
    (code, [(CONTENT_TYPE, "application/json")], body).into_response()
}

/// The answer to send for a request whose real answer is `status`/`body`,
/// after applying `fault` if there is one.
pub(crate) async fn deliver(
    fault: Option<Fault>,
    status: u16,
    body: Vec<u8>,
    conn: Option<ConnTag>,
) -> Response {
    match fault {
        None => json_response(status, body),
        Some(Fault::Respond {
            status,
            headers,
            body,
        }) => respond(status, &headers, body),
        Some(Fault::Hang(duration)) => hang(duration, conn).await,
        Some(Fault::Truncated) => truncated(status, body),
        Some(Fault::SlowBody(interval)) => slow(status, body, interval),
    }
}

fn respond(status: u16, headers: &[(String, String)], body: String) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (code, body).into_response();
    // Only the fault's own headers: `String` bodies default to text/plain.
    response.headers_mut().remove(CONTENT_TYPE);
    for (name, value) in headers {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(n), Ok(v)) => {
                response.headers_mut().append(n, v);
            }
            _ => tracing::warn!(%name, "simulator fault: skipping invalid header"),
        }
    }
    response
}

/// Closes the connection without answering, after `duration` or as soon as
/// the server shuts the connection down. Served outside [`super::Simulator::serve`]
/// (no connection handle), the best available is headers followed by an
/// aborted body.
pub(crate) async fn hang(duration: Duration, conn: Option<ConnTag>) -> Response {
    match conn {
        Some(conn) => {
            tokio::select! {
                () = tokio::time::sleep(duration) => {}
                () = conn.killed() => {}
            }
            conn.kill();
            // The socket is shut down, so hyper fails to write this and drops
            // the connection; nothing reaches the client.
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
        None => {
            tokio::time::sleep(duration).await;
            let aborted =
                stream::once(async { Err::<Bytes, io::Error>(io::Error::other("simulated hang")) });
            let mut response = Response::new(Body::from_stream(aborted));
            response
                .headers_mut()
                .insert(CONTENT_LENGTH, HeaderValue::from_static("1"));
            response
        }
    }
}

/// Half of the real body under a `Content-Length` for more, then an error:
/// hyper has no way to finish a fixed-length body early, so it aborts the
/// connection and the client sees a truncated message.
fn truncated(status: u16, body: Vec<u8>) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let declared = body.len() + 64;
    let mut body = body;
    body.truncate(body.len() / 2);
    let part = Bytes::from(body);
    let chunks = stream::iter((!part.is_empty()).then_some(Ok::<Bytes, io::Error>(part))).chain(
        stream::once(async {
            // Give hyper time to flush the partial body before the abort.
            tokio::time::sleep(Duration::from_millis(20)).await;
            Err(io::Error::other("simulated truncation"))
        }),
    );
    let mut response = Response::new(Body::from_stream(chunks));
    *response.status_mut() = code;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(declared));
    response
}

/// The real answer, one byte per `interval`, with its true `Content-Length`.
fn slow(status: u16, body: Vec<u8>, interval: Duration) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let bytes = Bytes::from(body);
    let len = bytes.len();
    let drip = stream::unfold((bytes, 0usize), move |(bytes, i)| async move {
        if i >= bytes.len() {
            return None;
        }
        tokio::time::sleep(interval).await;
        let byte = bytes.slice(i..i + 1);
        Some((Ok::<Bytes, io::Error>(byte), (bytes, i + 1)))
    });
    let mut response = Response::new(Body::from_stream(drip));
    *response.status_mut() = code;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
    response
}
