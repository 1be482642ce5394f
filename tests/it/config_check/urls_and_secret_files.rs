//! Plain http to a receiver and secret files others can read (issue 17,
//! item 11): a webhook `url` over `http://` needs `allow_insecure_http`
//! in its own table unless it names this machine (the refusals are rows of
//! the [`refused!`](super) table in `mod.rs`), and a world-readable secret
//! file is used with a warning.

use std::time::Duration;

use super::{
    API_KEY, BASE_URL, HOOK_URL, KEY_ENV, KEY_FILE, Setup, assert_no_secrets, assert_refused,
    replace,
};
use crate::support::{output_within, text};

/// Plain http needs no opt-in to this machine, and with
/// `allow_insecure_http = true` in the sink's table it is accepted to any
/// host; the URL's credentials are still never shown.
#[test]
fn plain_http_webhooks_are_accepted_to_loopback_and_elsewhere_only_with_the_opt_in() {
    let s = Setup::new();
    for url in [
        "http://127.0.0.1:9/hook",
        "http://127.8.9.10/hook",
        "http://localhost:8080/hook",
        "http://[::1]:9/hook",
        "http://ops:{password}@127.0.0.1:9/hook?token={token}",
    ] {
        let toml = replace(
            &s.good(),
            &s.expand(HOOK_URL),
            &s.expand(&format!("url = {url:?}")),
        );
        let out = s.check(&toml);
        assert_eq!(out.status.code(), Some(0), "{url}: {}", text(&out.stderr));
        assert_no_secrets(&out);
    }
    let remote = "http://ops:{password}@169.254.169.254/digicert?token={token}";
    let toml = replace(
        &s.good(),
        &s.expand(HOOK_URL),
        &s.expand(&format!("url = {remote:?}\nallow_insecure_http = true")),
    );
    let out = s.check(&toml);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        stdout.contains("sink hook: webhook http://redacted:redacted@169.254.169.254/digicert"),
        "{stdout}"
    );
    assert_no_secrets(&out);
}

/// `run` refuses a remote plain-http webhook like `check` does, before it
/// polls or sends anything (the API here is a closed loopback port, so
/// nothing could leave the machine even if it did not).
#[test]
fn run_refuses_a_remote_plain_http_webhook_before_doing_anything() {
    let s = Setup::new();
    let toml = replace(
        &s.good(),
        BASE_URL,
        "base_url = \"http://127.0.0.1:9/services/v2\"",
    );
    let toml = replace(
        &toml,
        &s.expand(HOOK_URL),
        &s.expand("url = \"http://ops:{password}@hooks.example.net/digicert\""),
    );
    s.write(&toml);
    let c = s.command(&[
        "--config",
        &s.config().display().to_string(),
        "run",
        "--once",
    ]);
    let out = output_within(c, Duration::from_secs(60));
    assert_refused(
        &s,
        &out,
        &["sinks[2] (\"hook\").url", "allow_insecure_http = true"],
    );
    assert!(!s.path("orderwatch.db").exists(), "a store was created");
}

/// Checks `toml` with `file` readable by everyone, then private: `check`
/// passes both times, warns (naming the file and `chmod 600`) only the
/// first time, and never shows `secret`.
fn warns_only_while_shared(s: &Setup, file: &std::path::Path, toml: &str, secret: &str) {
    use std::os::unix::fs::PermissionsExt;
    let warning = "readable by every user";

    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = s.check(toml);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let line = err
        .lines()
        .find(|l| l.contains(warning))
        .unwrap_or_else(|| panic!("no warning about {}:\n{err}", file.display()));
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains(&file.display().to_string()), "{line}");
    assert!(line.contains("chmod 600"), "{line}");
    assert!(!err.contains(secret), "the secret was shown:\n{err}");
    assert_no_secrets(&out);

    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = s.check(toml);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains(warning), "a private file warned:\n{err}");
}

/// A secret file every user may read is used, with a warning naming the
/// file and the fix; a private one gets no warning. The secret itself
/// never shows.
#[test]
fn a_secret_file_readable_by_everyone_is_used_with_a_warning() {
    let s = Setup::new();
    let key_file = s.path("digicert-api-key");
    std::fs::write(&key_file, format!("{API_KEY}\n")).unwrap();
    let toml = replace(&s.good(), KEY_ENV, &s.expand(KEY_FILE));
    warns_only_while_shared(&s, &key_file, &toml, API_KEY);
}

/// The same for a NATS sink's `.creds` file, which holds an NKEY seed.
#[test]
fn a_nats_creds_file_readable_by_everyone_is_used_with_a_warning() {
    let s = Setup::new();
    let creds = s.path("nats.creds");
    std::fs::write(&creds, NATS_CREDS).unwrap();
    let toml = format!(
        "{}\n[[sinks]]\nname = \"bus\"\ntype = \"nats\"\nurl = \"nats://127.0.0.1:4222\"\ncredentials_file = {:?}\n",
        s.good(),
        creds.display()
    );
    warns_only_while_shared(&s, &creds, &toml, "SUAOY5JZ");
}

/// A well-formed `.creds` file: a user JWT (not checked client-side) and
/// the example seed of NATS's documentation.
const NATS_CREDS: &str = include_str!("../../fixtures/nats-example.creds");
