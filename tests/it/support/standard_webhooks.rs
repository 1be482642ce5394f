//! Signatures checked by the official Standard Webhooks library (Python's
//! `standardwebhooks`), not by orderwatch's signer nor our own receiver: a
//! third opinion on what "any official library must verify it" means.

use std::io::Write;
use std::process::{Command, Stdio};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::receiver::Delivery;
use super::text;

/// Verifies every delivery with `secret` alone; returns how many verified,
/// or `None` when python3 or the library is missing (the caller skips).
/// A delivery that does not verify fails the test with the library's error.
pub fn verify(deliveries: &[Delivery], secret: &str) -> Option<usize> {
    let probe = Command::new("python3")
        .args(["-c", "import standardwebhooks"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !matches!(probe, Ok(s) if s.success()) {
        return None;
    }
    const SCRIPT: &str = r#"
import base64, json, sys
from standardwebhooks.webhooks import Webhook
wh = Webhook(sys.argv[1])
n = 0
for line in sys.stdin:
    d = json.loads(line)
    body = base64.b64decode(d["body"])
    wh.verify(body, {"webhook-id": d["id"], "webhook-timestamp": d["ts"], "webhook-signature": d["sig"]})
    n += 1
print(n)
"#;
    let mut child = Command::new("python3")
        .args(["-c", SCRIPT, secret])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    {
        let mut stdin = child.stdin.take().expect("stdin");
        for d in deliveries {
            let line = serde_json::json!({
                "id": d.id, "ts": d.timestamp.to_string(), "sig": d.signature,
                "body": STANDARD.encode(&d.raw_body),
            });
            writeln!(stdin, "{line}").expect("write to python3");
        }
    }
    let out = child.wait_with_output().expect("python3 finishes");
    assert!(
        out.status.success(),
        "the official Standard Webhooks library refused a signature:\n{}",
        text(&out.stderr)
    );
    Some(text(&out.stdout).trim().parse().expect("a count"))
}

/// Whether one of the delivery's signatures verifies with `secret` (our
/// own check, for when the Python library is missing).
pub fn signed_with(d: &Delivery, secret: &str) -> bool {
    use hmac::{Hmac, KeyInit, Mac};
    let Ok(key) = STANDARD.decode(secret.trim_start_matches("whsec_")) else {
        return false;
    };
    let Ok(mut mac) = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&key) else {
        return false;
    };
    mac.update(format!("{}.{}.", d.id, d.timestamp).as_bytes());
    mac.update(&d.raw_body);
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    d.signature.split(' ').any(|s| s == expected)
}
