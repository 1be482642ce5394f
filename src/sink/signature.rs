//! Standard Webhooks signatures (<https://www.standardwebhooks.com/>):
//! `v1,` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")), where the key
//! is the base64 part of a `whsec_...` secret.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// A decoded signing key. Its `Debug` does not show the key.
#[derive(Clone)]
pub struct SigningKey(Vec<u8>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey([redacted])")
    }
}

/// Why a secret is not a Standard Webhooks secret. Never contains the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretFormatError {
    #[error(
        "does not start with \"whsec_\"; Standard Webhooks secrets look like \"whsec_\" followed by base64"
    )]
    Prefix,
    #[error("the part after \"whsec_\" is not valid base64")]
    Base64,
    #[error("the key is shorter than 24 bytes; generate at least 24 random bytes (32 recommended)")]
    TooShort,
}

impl SigningKey {
    /// Parses `whsec_<base64>`.
    pub fn from_secret(secret: &str) -> Result<SigningKey, SecretFormatError> {
        let b64 = secret
            .strip_prefix("whsec_")
            .ok_or(SecretFormatError::Prefix)?;
        let key = STANDARD
            .decode(b64)
            .map_err(|_| SecretFormatError::Base64)?;
        if key.len() < 24 {
            return Err(SecretFormatError::TooShort);
        }
        Ok(SigningKey(key))
    }

    /// The `webhook-signature` header value for one message.
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        // HMAC accepts keys of any length; this cannot fail.
        let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0) {
            Ok(m) => m,
            Err(_) => return String::new(),
        };
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vector of the Standard Webhooks libraries' test suites (also checked
    /// with the official Python package `standardwebhooks`, which produced
    /// the same signature for these inputs).
    #[test]
    fn matches_the_standard_webhooks_test_vector() {
        let key = SigningKey::from_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = key.sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn any_change_changes_the_signature() {
        let key = SigningKey::from_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let base = key.sign("id", 1, b"body");
        assert_ne!(base, key.sign("id", 2, b"body"));
        assert_ne!(base, key.sign("ie", 1, b"body"));
        assert_ne!(base, key.sign("id", 1, b"bodz"));
    }

    #[test]
    fn malformed_secrets_are_refused_without_echoing_them() {
        assert_eq!(
            SigningKey::from_secret("hunter2").unwrap_err(),
            SecretFormatError::Prefix
        );
        assert_eq!(
            SigningKey::from_secret("whsec_!!!").unwrap_err(),
            SecretFormatError::Base64
        );
        assert_eq!(
            SigningKey::from_secret("whsec_c2hvcnQ=").unwrap_err(),
            SecretFormatError::TooShort
        );
        let shown = format!(
            "{:?}",
            SigningKey::from_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap()
        );
        assert!(!shown.contains("MfKQ"), "{shown}");
    }
}
