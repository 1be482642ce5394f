//! Standard Webhooks signatures (<https://www.standardwebhooks.com/>):
//! `v1,` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")), where the key
//! is the base64 part of a `whsec_...` secret.
//!
//! A sink may hold several secrets at once ([`SigningKeys`]), so a secret can
//! be rotated without a moment in which receivers refuse events: the spec
//! makes `webhook-signature` a space-separated list for exactly this, and a
//! receiver accepts a message when any one signature verifies with its key.

use base64::Engine;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};

/// Secrets are read with or without `=` padding, as the official
/// libraries read them (the Python one appends padding before decoding).
const SECRET_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// A signing key, prepared once: the HMAC state after the key's block, so
/// each message costs only its own bytes (the key's two hash blocks are not
/// redone per request). Its `Debug` does not show the key.
#[derive(Clone)]
pub struct SigningKey(Hmac<Sha256>);

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
    /// Parses `whsec_<base64>`. The spec asks for at least 24 random bytes;
    /// shorter keys are refused rather than silently accepted.
    pub fn from_secret(secret: &str) -> Result<SigningKey, SecretFormatError> {
        let b64 = secret
            .strip_prefix("whsec_")
            .ok_or(SecretFormatError::Prefix)?;
        let key = SECRET_BASE64
            .decode(b64.trim())
            .map_err(|_| SecretFormatError::Base64)?;
        if key.len() < 24 {
            return Err(SecretFormatError::TooShort);
        }
        // HMAC accepts keys of any length; this cannot fail.
        <Hmac<Sha256> as KeyInit>::new_from_slice(&key)
            .map(SigningKey)
            .map_err(|_| SecretFormatError::TooShort)
    }

    /// The `webhook-signature` header value for one message.
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = self.0.clone();
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(itoa::Buffer::new().format(timestamp).as_bytes());
        mac.update(b".");
        mac.update(body);
        let mut out = String::with_capacity(3 + 44);
        out.push_str("v1,");
        STANDARD.encode_string(mac.finalize().into_bytes(), &mut out);
        out
    }
}

/// The most secrets one sink signs with: rotation needs two; a long list
/// is a mistake (a pasted file), and every secret costs an HMAC per request.
pub const MAX_SECRETS: usize = 10;

/// Every key a sink signs with, in the order the secret source lists them.
#[derive(Debug, Clone)]
pub struct SigningKeys(Vec<SigningKey>);

/// Why a secret source does not hold a usable list of secrets. Names a bad
/// secret by its position only, never by its value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretListError {
    #[error("holds no secret")]
    Empty,
    #[error("holds {0} secrets; at most {MAX_SECRETS} are allowed (two are enough to rotate one)")]
    TooMany(usize),
    /// `position` counts from 1; `of` is how many the source holds.
    #[error("{}: {error}", ordinal(*position, *of))]
    Bad {
        position: usize,
        of: usize,
        error: SecretFormatError,
    },
}

/// "the secret" when there is one, else "secret 2 of 3".
fn ordinal(position: usize, of: usize) -> String {
    if of == 1 {
        "the secret".to_string()
    } else {
        format!("secret {position} of {of}")
    }
}

impl SigningKeys {
    /// Parses one or more `whsec_` secrets separated by whitespace (spaces
    /// or newlines: one per line in a file reads naturally). Every one must
    /// be valid: a typo in the new secret must stop `check` and the reload,
    /// not go out as a signature no receiver can verify.
    pub fn from_secrets(text: &str) -> Result<SigningKeys, SecretListError> {
        let secrets: Vec<&str> = text.split_whitespace().collect();
        let of = secrets.len();
        if of == 0 {
            return Err(SecretListError::Empty);
        }
        if of > MAX_SECRETS {
            return Err(SecretListError::TooMany(of));
        }
        let keys = secrets
            .iter()
            .enumerate()
            .map(|(i, s)| {
                SigningKey::from_secret(s).map_err(|error| SecretListError::Bad {
                    position: i + 1,
                    of,
                    error,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SigningKeys(keys))
    }

    /// The `webhook-signature` header value: one `v1,<sig>` per secret,
    /// separated by spaces, in the order the secrets are listed.
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        let all: Vec<String> = self
            .0
            .iter()
            .map(|k| k.sign(msg_id, timestamp, body))
            .collect();
        all.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vector of the official Standard Webhooks libraries' own tests
    /// (`test_sign_function` in `libraries/python/tests/test_webhooks.py`,
    /// `TestWebhookSign` in `libraries/go/webhook_test.go` of
    /// github.com/standard-webhooks/standard-webhooks).
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

    /// An orderwatch-shaped message (the contract's example event), signed
    /// by the official Python package `standardwebhooks` 1.x
    /// (`Webhook(secret).sign(id, datetime.fromtimestamp(ts, timezone.utc), body)`).
    #[test]
    fn matches_the_official_python_library_on_a_cloudevent() {
        let body = br#"{"specversion":"1.0","id":"264:canceled","source":"https://www.digicert.com/services/v2","type":"com.digicert.certcentral.order.status_changed","subject":"orders/264","time":"2026-11-24T10:02:03Z","datacontenttype":"application/json","data":{"order_id":264,"certificate_id":112232,"status":"canceled","previous_status":"pending"}}"#;
        let key = SigningKey::from_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            key.sign("264:canceled", 1795514523, body),
            "v1,KPtk5PL+6W3K58k1KqxqRa9ABRtLTPOunxZEitZuhbc="
        );
    }

    /// A 32-byte key written without base64 padding, and a non-ASCII body;
    /// expected value from the official Python package, as above.
    #[test]
    fn unpadded_secrets_and_utf8_bodies_match_the_official_python_library() {
        let padded =
            SigningKey::from_secret("whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap();
        let unpadded =
            SigningKey::from_secret("whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8").unwrap();
        let expected = "v1,oE6+J08ek2Equ1d1JJQh1P/Wqz5vanNd/xgn5+uyG5Y=";
        let body = r#"{"a":"é"}"#.as_bytes();
        assert_eq!(padded.sign("1:issued", 1700000000, body), expected);
        assert_eq!(unpadded.sign("1:issued", 1700000000, body), expected);
    }

    #[test]
    fn any_change_changes_the_signature() {
        let key = SigningKey::from_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let base = key.sign("id", 1, b"body");
        assert_ne!(base, key.sign("id", 2, b"body"));
        assert_ne!(base, key.sign("ie", 1, b"body"));
        assert_ne!(base, key.sign("id", 1, b"bodz"));
    }

    const OLD: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const NEW: &str = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    #[test]
    fn several_secrets_give_one_signature_each_in_their_order() {
        let body = br#"{"a":1}"#;
        let old = SigningKey::from_secret(OLD)
            .unwrap()
            .sign("1:issued", 7, body);
        let new = SigningKey::from_secret(NEW)
            .unwrap()
            .sign("1:issued", 7, body);
        for text in [
            format!("{OLD} {NEW}"),
            format!("{OLD}\n{NEW}\n"),
            format!("  {OLD}\t{NEW}  "),
        ] {
            let keys = SigningKeys::from_secrets(&text).unwrap();
            assert_eq!(keys.sign("1:issued", 7, body), format!("{old} {new}"));
        }
        // One secret: exactly the single signature, as before rotation.
        let one = SigningKeys::from_secrets(&format!("{OLD}\n")).unwrap();
        assert_eq!(one.sign("1:issued", 7, body), old);
    }

    #[test]
    fn one_bad_secret_among_good_ones_is_named_by_position_not_value() {
        let err = SigningKeys::from_secrets(&format!("{OLD} whsec_c2hvcnQ= {NEW}")).unwrap_err();
        assert_eq!(
            err,
            SecretListError::Bad {
                position: 2,
                of: 3,
                error: SecretFormatError::TooShort
            }
        );
        let shown = err.to_string();
        assert!(shown.starts_with("secret 2 of 3: "), "{shown}");
        assert!(!shown.contains("c2hvcnQ"), "{shown}");
        let err = SigningKeys::from_secrets(&format!("{OLD} hunter2")).unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        let single = SigningKeys::from_secrets("hunter2")
            .unwrap_err()
            .to_string();
        assert!(
            single.starts_with("the secret: does not start with"),
            "{single}"
        );
        assert_eq!(
            SigningKeys::from_secrets(" \n").unwrap_err(),
            SecretListError::Empty
        );
        let many = [OLD; MAX_SECRETS + 1].join(" ");
        assert_eq!(
            SigningKeys::from_secrets(&many).unwrap_err(),
            SecretListError::TooMany(MAX_SECRETS + 1)
        );
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
