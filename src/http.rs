//! HTTP plumbing shared by everything that talks HTTP out of the process (the
//! CertCentral client, webhook sinks): one client builder with orderwatch's
//! defaults, bounded body reads, and readable error chains.
//!
//! Both callers want the same things from a client: rustls with the ring
//! provider (no OpenSSL), a user agent naming orderwatch, a connect timeout,
//! and redirects refused, since a redirect would carry credentials (the API
//! key header, webhook signatures) to a host nobody configured.
//!
//! Trust roots come from the system's CA store. A host without one (a
//! minimal container, a debootstrap) used to get "builder error" and exit 2
//! even for plain http to loopback; now it gets Mozilla's roots bundled in
//! the binary, and one warning that says what is missing and how to fix it.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls_native_certs::CertificateResult;

/// How much of an unexpected body is kept for an error message.
const SNIPPET: usize = 200;

/// Installs the rustls crypto provider once per process (ring; no OpenSSL).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A client builder with orderwatch's defaults: `timeout` for a whole
/// request (answer included), at most 10 s to connect, no redirects, and
/// the trust roots of [`trust_roots`].
pub fn client_builder(timeout: Duration) -> reqwest::ClientBuilder {
    client_builder_trusting(timeout, &[])
}

/// [`client_builder`] that also trusts `extra_roots` (`[digicert] ca_file`).
pub fn client_builder_trusting(
    timeout: Duration,
    extra_roots: &[CertificateDer<'static>],
) -> reqwest::ClientBuilder {
    install_crypto_provider();
    reqwest::Client::builder()
        .tls_certs_only(
            trust_roots()
                .iter()
                .chain(extra_roots)
                .filter_map(|c| reqwest::Certificate::from_der(c).ok()),
        )
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .user_agent(concat!("orderwatch/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
}

/// A TLS client configuration with the same roots and provider as every
/// HTTP client, for a bare handshake (`orderwatch check --online` reaching
/// a webhook receiver without sending it a request).
pub fn tls_config() -> Arc<rustls::ClientConfig> {
    install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    // A root the store cannot use is skipped, as reqwest skips it.
    let _ = roots.add_parsable_certificates(trust_roots().iter().cloned());
    Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// Where the trust roots came from.
#[derive(Debug)]
enum Roots {
    /// The system's CA store (or `SSL_CERT_FILE` / `SSL_CERT_DIR`).
    System(Vec<CertificateDer<'static>>),
    /// The bundled Mozilla roots, and why the system's were not used.
    Bundled(Vec<CertificateDer<'static>>, String),
}

/// The roots every client trusts, loaded once per process (a reload does
/// not read the CA store again; a restart does), so the warning about a
/// missing store is logged once, not once per client.
fn trust_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| match choose_roots(rustls_native_certs::load_native_certs()) {
        Roots::System(certs) => certs,
        Roots::Bundled(certs, why) => {
            tracing::warn!(
                "no CA certificates on this system ({why}); HTTPS uses the {} root certificates built into orderwatch (Mozilla's) instead. \
                 Install the system's CA store (Debian, Ubuntu: apt install ca-certificates) or point SSL_CERT_FILE at a PEM bundle, \
                 then restart orderwatch, so CA updates and your own CAs apply",
                certs.len()
            );
            certs
        }
    })
}

/// The system's roots when there are any, else the bundled ones. Files
/// that cannot be read beside usable ones are not worth a warning.
///
/// Each root is kept once. Debian's store holds every root twice, in the
/// bundle `ca-certificates.crt` and as a file of `/etc/ssl/certs`, and
/// both are read; every copy would otherwise be parsed again by every
/// client and held for the daemon's life.
fn choose_roots(native: CertificateResult) -> Roots {
    // Marked by borrowing, not copying: what a copy takes stays in the
    // heap of a daemon that never frees that much again.
    let first: Vec<bool> = {
        let mut seen = std::collections::HashSet::with_capacity(native.certs.len());
        native
            .certs
            .iter()
            .map(|c| seen.insert(c.as_ref()))
            .collect()
    };
    let system: Vec<CertificateDer<'static>> = native
        .certs
        .into_iter()
        .zip(first)
        .filter(|(c, first)| *first && reqwest::Certificate::from_der(c).is_ok())
        .map(|(c, _)| c)
        .collect();
    if !system.is_empty() {
        return Roots::System(system);
    }
    let why = if native.errors.is_empty() {
        "none found in /etc/ssl/certs or the other usual places".to_string()
    } else {
        native
            .errors
            .iter()
            .map(|e| error_chain(e))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let bundled = webpki_root_certs::TLS_SERVER_ROOT_CERTS.to_vec();
    Roots::Bundled(bundled, why)
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

/// Text a server chose, fit for a log line, a status line or a ledger
/// column: at most `limit` characters (then `…`), and every control
/// character (newlines, escape sequences, NUL) and bidi control written as
/// `\u{..}`, so it can neither forge a line nor reorder what follows.
pub fn printable(text: &str, limit: usize) -> String {
    let mut out = String::with_capacity(text.len().min(limit + 8));
    for (n, c) in text.chars().enumerate() {
        if n == limit {
            out.push('…');
            break;
        }
        let bidi = matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        if c.is_control() || bidi {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
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
    fn without_a_system_ca_store_the_bundled_roots_are_used_and_the_reason_kept() {
        let mut native = CertificateResult::default();
        native.errors.push(rustls_native_certs::Error {
            context: "failed to read PEM from file",
            kind: rustls_native_certs::ErrorKind::Io {
                inner: std::io::Error::from(std::io::ErrorKind::NotFound),
                path: "/etc/ssl/certs/ca-certificates.crt".into(),
            },
        });
        match choose_roots(native) {
            Roots::Bundled(certs, why) => {
                assert!(certs.len() > 100, "only {} bundled roots", certs.len());
                assert!(why.contains("/etc/ssl/certs/ca-certificates.crt"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        match choose_roots(CertificateResult::default()) {
            Roots::Bundled(_, why) => assert!(why.contains("none found"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_root_found_twice_is_kept_once() {
        let roots = &webpki_root_certs::TLS_SERVER_ROOT_CERTS;
        let mut native = CertificateResult::default();
        // The bundle, then the directory: the same roots again.
        native.certs.extend(roots[..3].iter().cloned());
        native.certs.extend(roots[..3].iter().rev().cloned());
        native.certs.push(roots[3].clone());
        match choose_roots(native) {
            Roots::System(certs) => assert_eq!(certs, roots[..4].to_vec()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_system_ca_store_wins_over_the_bundled_roots() {
        let mut native = CertificateResult::default();
        native
            .certs
            .push(webpki_root_certs::TLS_SERVER_ROOT_CERTS[0].clone());
        match choose_roots(native) {
            Roots::System(certs) => assert_eq!(certs.len(), 1),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn server_text_cannot_forge_log_lines_or_reorder_them() {
        assert_eq!(printable("bad key", 100), "bad key");
        assert_eq!(
            printable("x\nERROR forged\u{1b}[2J\u{202e}", 100),
            "x\\u{a}ERROR forged\\u{1b}[2J\\u{202e}"
        );
        assert_eq!(
            printable(&"m".repeat(500), 10),
            format!("{}…", "m".repeat(10))
        );
    }

    #[test]
    fn a_snippet_is_one_short_printable_line() {
        assert_eq!(snippet(b""), "(empty body)");
        assert_eq!(snippet(b"  a\nb\x1b[31m "), "a b [31m");
        let long = vec![b'x'; 300];
        assert_eq!(snippet(&long).chars().count(), SNIPPET + 1);
    }
}
