//! Reaching a webhook receiver without delivering anything, for `orderwatch
//! check --online`: resolve the host, open a TCP connection and, for
//! `https`, complete a TLS handshake with the same roots as every request.
//! No HTTP request is sent, so a receiver sees at most a connection that
//! closes, never an event.

use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

use crate::http;

/// Connects to `url`'s host; `endpoint` names it in messages (no
/// credentials). Each step gets `timeout`. Returns what was reached.
pub async fn handshake(
    url: &reqwest::Url,
    endpoint: &str,
    timeout: Duration,
) -> Result<String, String> {
    let host = match url.host() {
        Some(url::Host::Domain(d)) => d.to_string(),
        Some(url::Host::Ipv4(a)) => a.to_string(),
        Some(url::Host::Ipv6(a)) => a.to_string(),
        None => return Err(format!("{endpoint} has no host")),
    };
    let port = url.port_or_known_default().unwrap_or(443);
    let step = |what: String| {
        move |_| {
            format!(
                "{what} took longer than {}",
                humantime::format_duration(timeout)
            )
        }
    };
    let addrs: Vec<_> =
        tokio::time::timeout(timeout, tokio::net::lookup_host((host.as_str(), port)))
            .await
            .map_err(step(format!("resolving {host}")))?
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .collect();
    let mut last = format!("{host} resolves to no address");
    let mut connected = None;
    for addr in addrs {
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                connected = Some((addr, stream));
                break;
            }
            Ok(Err(e)) => last = format!("cannot connect to {endpoint} ({addr}): {e}"),
            Err(_) => {
                last = format!(
                    "connecting to {endpoint} ({addr}) took longer than {}",
                    humantime::format_duration(timeout)
                )
            }
        }
    }
    let Some((addr, stream)) = connected else {
        return Err(last);
    };
    if url.scheme() != "https" {
        return Ok(format!("connected to {endpoint} ({addr})"));
    }
    let name = ServerName::try_from(host.clone())
        .map_err(|e| format!("{host} is not a name TLS can check: {e}"))?;
    let connector = tokio_rustls::TlsConnector::from(http::tls_config());
    let tls = tokio::time::timeout(timeout, connector.connect(name, stream))
        .await
        .map_err(step(format!("the TLS handshake with {endpoint}")))?
        .map_err(|e| {
            format!(
                "TLS handshake with {endpoint} ({addr}) failed: {}",
                http::error_chain(&e)
            )
        })?;
    let version = tls
        .get_ref()
        .1
        .protocol_version()
        .map_or_else(String::new, |v| format!(", {v:?}"));
    Ok(format!(
        "connected to {endpoint} ({addr}), TLS handshake ok{version}"
    ))
}
