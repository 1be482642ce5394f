//! Secrets that cannot be logged by accident.

use std::fmt;
use std::path::{Path, PathBuf};

use super::{API_KEY_CREDENTIAL, DEFAULT_API_KEY_ENV};

/// A secret value. `Debug` and `Display` never show it; the only way out is
/// [`Secret::expose`], which keeps every use greppable.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Where a secret comes from. Holds no secret itself, so it may be shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    Env(String),
    File(PathBuf),
    /// A systemd credential (`LoadCredential=`), read from `$CREDENTIALS_DIRECTORY`.
    Credential {
        dir: PathBuf,
        name: String,
    },
}

/// Why a secret could not be read. Never contains the secret.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("environment variable {0} is not set")]
    EnvMissing(String),
    #[error("environment variable {0} is empty")]
    EnvEmpty(String),
    /// Not named `source`, so `{:#}` does not print the error twice.
    #[error("cannot read {path}: {error}")]
    FileUnreadable {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{0} is empty")]
    FileEmpty(PathBuf),
    /// The value cannot travel in an HTTP header (the API key's
    /// `X-DC-DEVKEY`): a second line, a control or non-ASCII character.
    #[error(
        "what {from} holds is not sendable in an HTTP header (a control or non-ASCII character at character {at}); it must hold the key alone, on one line"
    )]
    NotHeaderSafe { from: String, at: usize },
}

impl SecretSource {
    /// The default for the API key: the systemd credential when the service
    /// manager provided one, else `$DIGICERT_API_KEY`.
    pub fn default_api_key(env: &dyn Fn(&str) -> Option<String>) -> SecretSource {
        if let Some(dir) = env("CREDENTIALS_DIRECTORY") {
            let dir = PathBuf::from(dir);
            if dir.join(API_KEY_CREDENTIAL).exists() {
                return SecretSource::Credential {
                    dir,
                    name: API_KEY_CREDENTIAL.to_string(),
                };
            }
        }
        SecretSource::Env(DEFAULT_API_KEY_ENV.to_string())
    }

    /// Where in its table this source was named, after the table's name:
    /// `.{stem}_env`, `.{stem}_file`, or ` (systemd credential "name")`.
    pub fn key_suffix(&self, stem: &str) -> String {
        match self {
            SecretSource::Env(_) => format!(".{stem}_env"),
            SecretSource::File(_) => format!(".{stem}_file"),
            SecretSource::Credential { name, .. } => format!(" (systemd credential {name:?})"),
        }
    }

    /// Reads the secret, trimming the trailing newline editors and `echo` add.
    pub fn load(&self) -> Result<Secret, SecretError> {
        self.load_with(&super::process_env)
    }

    /// Reads a secret that is sent as an HTTP header value (the DigiCert
    /// API key): one that is not, such as a key file with a comment on a
    /// second line, is refused here, naming where it came from, instead of
    /// reaching DigiCert as something else and coming back as a bare 401.
    pub fn load_header(&self) -> Result<Secret, SecretError> {
        let secret = self.load()?;
        match secret.0.chars().position(|c| !(' '..='~').contains(&c)) {
            None => Ok(secret),
            Some(i) => Err(SecretError::NotHeaderSafe {
                from: self.to_string(),
                at: i + 1,
            }),
        }
    }

    pub fn load_with(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<Secret, SecretError> {
        match self {
            SecretSource::Env(var) => match env(var) {
                None => Err(SecretError::EnvMissing(var.clone())),
                Some(v) if v.trim().is_empty() => Err(SecretError::EnvEmpty(var.clone())),
                Some(v) => Ok(Secret(v.trim().to_string())),
            },
            SecretSource::File(path) => read_file(path),
            SecretSource::Credential { dir, name } => read_file(&dir.join(name)),
        }
    }
}

/// `{stem}_env = "NAME"` as a source, if `NAME` can be a variable's name.
/// A value that cannot (or a Standard Webhooks secret, `whsec_...`) is
/// most likely the secret itself pasted into the wrong key: it is refused
/// without being repeated, so it does not end up in the journal.
pub fn env_source(var: &str) -> Result<SecretSource, &'static str> {
    let mut bytes = var.bytes();
    let name = bytes
        .next()
        .is_some_and(|b| b == b'_' || b.is_ascii_alphabetic())
        && bytes.all(|b| b == b'_' || b.is_ascii_alphanumeric());
    if !name || var.starts_with("whsec_") {
        return Err(
            "is not the name of an environment variable (letters, digits and _, not starting with a digit); \
             it names the variable that holds the secret, never the secret itself (the value is not shown)",
        );
    }
    Ok(SecretSource::Env(var.to_string()))
}

/// The largest secret file read: keys and secrets are well under 1 KiB.
const MAX_SECRET_SIZE: u64 = 64 * 1024;

fn read_file(path: &Path) -> Result<Secret, SecretError> {
    let text = super::field::read_small_file(path, MAX_SECRET_SIZE).map_err(|error| {
        SecretError::FileUnreadable {
            path: path.to_path_buf(),
            error,
        }
    })?;
    warn_if_shared(path);
    let value = text.trim();
    if value.is_empty() {
        return Err(SecretError::FileEmpty(path.to_path_buf()));
    }
    Ok(Secret(value.to_string()))
}

/// Says so when a secret file is readable by every user: the secret is
/// only as safe as the file. systemd credentials are private by design.
pub(crate) fn warn_if_shared(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o004 != 0
    {
        tracing::warn!(
            file = %path.display(),
            "a secret file is readable by every user on this machine; make it private: chmod 600 (or use a systemd credential)"
        );
    }
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Env(var) => write!(f, "environment variable {var}"),
            SecretSource::File(path) => write!(f, "file {}", path.display()),
            SecretSource::Credential { name, .. } => write!(f, "systemd credential {name}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Secret::new("whsec_supersecret");
        assert!(!format!("{s:?}").contains("supersecret"));
        assert!(!format!("{s}").contains("supersecret"));
        assert_eq!(s.expose(), "whsec_supersecret");
    }

    #[test]
    fn a_key_that_cannot_be_a_header_is_refused_naming_its_file_not_its_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "realkey123\n# rotated 2026-11\n").unwrap();
        let e = SecretSource::File(path.clone())
            .load_header()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains(&path.display().to_string()), "{e}");
        assert!(e.contains("at character 11"), "{e}");
        assert!(!e.contains("realkey123") && !e.contains("rotated"), "{e}");
        std::fs::write(&path, "realkey 123\n").unwrap();
        let ok = SecretSource::File(path)
            .load_header()
            .map(|s| s.expose().to_string());
        assert_eq!(ok.ok().as_deref(), Some("realkey 123"), "one line, trimmed");
    }

    #[test]
    fn env_secret_is_trimmed_and_required() {
        let env = |k: &str| match k {
            "KEY" => Some("abc\n".to_string()),
            "EMPTY" => Some("  ".to_string()),
            _ => None,
        };
        let ok = SecretSource::Env("KEY".into()).load_with(&env);
        assert_eq!(
            ok.map(|s| s.expose().to_string()).ok(),
            Some("abc".to_string())
        );
        assert!(matches!(
            SecretSource::Env("EMPTY".into()).load_with(&env),
            Err(SecretError::EnvEmpty(_))
        ));
        assert!(matches!(
            SecretSource::Env("NOPE".into()).load_with(&env),
            Err(SecretError::EnvMissing(_))
        ));
    }

    #[test]
    fn huge_and_non_regular_secret_files_are_refused_without_hanging() {
        let err = SecretSource::File("/dev/zero".into())
            .load_with(&|_| None)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("/dev/zero") && err.contains("not a regular file"),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'k'; 100_000]).unwrap();
        let err = SecretSource::File(big)
            .load_with(&|_| None)
            .err()
            .map(|e| e.to_string());
        assert!(err.unwrap_or_default().contains("larger than 65536 bytes"));
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid C string; mkfifo has no other preconditions.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let err = SecretSource::File(fifo)
            .load_with(&|_| None)
            .err()
            .map(|e| e.to_string());
        assert!(err.unwrap_or_default().contains("not a regular file"));
    }

    #[test]
    fn file_secret_errors_name_the_path() {
        let err = SecretSource::File("/nonexistent/key".into())
            .load_with(&|_| None)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("/nonexistent/key"), "{err}");
    }
}
