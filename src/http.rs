//! HTTP plumbing shared by everything that talks HTTP out of the process (the
//! CertCentral client, webhook sinks): one client builder with orderwatch's
//! defaults, bounded body reads, and readable error chains.
//!
//! Both callers want the same things from a client: rustls with the ring
//! provider (no OpenSSL), a user agent naming orderwatch, a connect timeout,
//! and redirects refused, since a redirect would carry credentials (the API
//! key header, webhook signatures) to a host nobody configured.

use std::time::Duration;

/// How much of an unexpected body is kept for an error message.
const SNIPPET: usize = 200;

/// Installs the rustls crypto provider once per process (ring; no OpenSSL).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A client builder with orderwatch's defaults: `timeout` for a whole
/// request (answer included), at most 10 s to connect, no redirects.
pub fn client_builder(timeout: Duration) -> reqwest::ClientBuilder {
    install_crypto_provider();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .user_agent(concat!("orderwatch/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
}

/// Reads up to `limit` bytes of a body, ignoring errors (it is only for messages).
pub async fn read_prefix(mut resp: reqwest::Response, limit: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < limit {
        match resp.chunk().await {
            Ok(Some(c)) => out.extend_from_slice(&c[..c.len().min(limit - out.len())]),
            _ => break,
        }
    }
    out
}

/// The first bytes of a body, printable, for an error message.
pub fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(SNIPPET)]);
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let flat = flat.trim().to_string();
    if flat.is_empty() {
        "(empty body)".to_string()
    } else if body.len() > SNIPPET {
        format!("{flat}…")
    } else {
        flat
    }
}

/// An error and its causes on one line ("error sending request: connection refused").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snippet_is_one_short_printable_line() {
        assert_eq!(snippet(b""), "(empty body)");
        assert_eq!(snippet(b"  a\nb\x1b[31m "), "a b [31m");
        let long = vec![b'x'; 300];
        assert_eq!(snippet(&long).chars().count(), SNIPPET + 1);
    }
}
