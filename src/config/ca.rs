//! `[digicert] ca_file`: extra certificate authorities to trust for
//! `base_url`, on top of the system's — for a TLS-intercepting proxy in front
//! of CertCentral, or a test server with its own CA.

use std::path::{Path, PathBuf};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// A CA bundle bigger than this is not a CA bundle (the whole Mozilla set
/// is about 220 KiB).
const MAX_CA_FILE: u64 = 4 * 1024 * 1024;

/// The certificates of a `ca_file`, and where they came from.
#[derive(Clone, PartialEq)]
pub struct CaFile {
    pub path: PathBuf,
    pub certs: Vec<CertificateDer<'static>>,
}

/// The path and how many certificates, not kilobytes of DER.
impl std::fmt::Debug for CaFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaFile")
            .field("path", &self.path)
            .field("certs", &self.certs.len())
            .finish()
    }
}

impl super::validate::Validator {
    /// `digicert.ca_file`, loaded; a problem naming the key when it cannot be.
    pub(super) fn ca_file(&mut self, path: Option<&Path>) -> Option<CaFile> {
        let loaded = load(path?);
        loaded.map_err(|e| self.problem("digicert.ca_file", e)).ok()
    }
}

/// Reads the PEM certificates of `path`; the error says what is wrong with
/// the file (the caller names the key).
pub(super) fn load(path: &Path) -> Result<CaFile, String> {
    let text = super::field::read_small_file(path, MAX_CA_FILE)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(text.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{} is not a PEM certificate bundle: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    if let Some(n) = certs
        .iter()
        .position(|c| reqwest::Certificate::from_der(c).is_err())
    {
        return Err(format!(
            "certificate {} in {} cannot be used as a trust root",
            n + 1,
            path.display()
        ));
    }
    Ok(CaFile {
        path: path.to_path_buf(),
        certs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_without_certificates_or_unreadable_is_refused_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = load(&empty).unwrap_err();
        assert!(
            err.contains("empty.pem") && err.contains("no PEM certificate"),
            "{err}"
        );
        let missing = dir.path().join("missing.pem");
        let err = load(&missing).unwrap_err();
        assert!(
            err.contains("missing.pem") && err.contains("cannot read"),
            "{err}"
        );
        let err = load(dir.path()).unwrap_err();
        assert!(err.contains("not a regular file"), "{err}");
    }

    #[test]
    fn the_bundled_roots_load_as_a_ca_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("roots.pem");
        let pem: String = webpki_root_certs::TLS_SERVER_ROOT_CERTS[..3]
            .iter()
            .map(|c| {
                use base64::Engine;
                let b64 = base64::engine::general_purpose::STANDARD.encode(c.as_ref());
                let lines: Vec<&str> = b64
                    .as_bytes()
                    .chunks(64)
                    .map(|l| std::str::from_utf8(l).unwrap())
                    .collect();
                format!(
                    "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
                    lines.join("\n")
                )
            })
            .collect();
        std::fs::write(&path, pem).unwrap();
        let ca = load(&path).unwrap();
        assert_eq!(ca.certs.len(), 3);
        assert_eq!(ca.certs[0], webpki_root_certs::TLS_SERVER_ROOT_CERTS[0]);
    }
}
