//! The NATS sink's pure parts: its keys, the secrets `build` reads, the
//! split of `max_in_flight`, and what each failure means for a delivery.
//! Publishing to a real server is tested in `tests/nats.rs`.

use std::path::Path;
use std::time::Duration;

use async_nats::ConnectErrorKind;
use async_nats::jetstream::context::PublishErrorKind;

use super::outcome::{Hints, connect_outcome, publish_outcome};
use super::publish::split;
use super::*;
use crate::config::field::Problems;
use crate::sink::kind::Outcome;

/// Reads a `[[sinks]]` table named `bus` of type nats (without the common
/// keys) with `env` as the process environment.
fn read(toml: &str, env: &dyn Fn(&str) -> Option<String>) -> (Option<Settings>, Vec<String>) {
    let rest: toml::Table = toml::from_str(toml).unwrap();
    let mut problems = Problems::default();
    let settings = {
        let mut table = SinkTable::new(0, Some("bus"), "nats", rest, &mut problems, env);
        settings(&mut table)
    };
    let shown = problems.0.iter().map(|p| p.to_string()).collect();
    (settings, shown)
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn ok(toml: &str) -> Settings {
    let (s, problems) = read(toml, &no_env);
    assert!(problems.is_empty(), "{problems:?}");
    s.unwrap()
}

/// The single problem of `toml`, as `check` shows it (any problem makes
/// the whole config invalid, whether or not the kind returned settings).
fn problem(toml: &str) -> String {
    let (_, problems) = read(toml, &no_env);
    assert_eq!(problems.len(), 1, "{toml}: {problems:?}");
    problems[0].clone()
}

const URL: &str = "url = \"nats://127.0.0.1:4222\"\n";

#[test]
fn defaults_are_the_documented_ones() {
    let s = ok(URL);
    assert_eq!(s.subject.to_string(), "certcentral.orders.{status}");
    assert_eq!(s.max_in_flight, 256);
    assert_eq!(s.auth, Auth::None);
    assert_eq!(s.shown_servers(), "nats://127.0.0.1:4222");
}

#[test]
fn several_servers_tls_and_bare_host_ports_are_accepted() {
    let s = ok("url = \"nats://10.0.0.1:4222, tls://nats.example.net,[::1]:4333\"\n");
    assert_eq!(
        s.shown_servers(),
        "nats://10.0.0.1:4222, tls://nats.example.net:4222, nats://[::1]:4333"
    );
    assert!(s.servers[1].tls_required());
}

#[test]
fn bad_urls_are_refused_naming_the_key() {
    for (url, why) in [
        ("nats://alice:hunter2@127.0.0.1:4222", "holds credentials"),
        ("nats://s3cr3t-token@127.0.0.1", "holds credentials"),
        ("ws://127.0.0.1:8080", "not a nats:// or tls:// URL"),
        ("http://127.0.0.1:4222", "invalid scheme"),
        ("nats://127.0.0.1:4222,,nats://127.0.0.2", "empty server"),
        ("nats://127.0.0.1:4222/stream", "path, query or fragment"),
        ("nats://127.0.0.1:99999", "invalid"),
    ] {
        let p = problem(&format!("url = {url:?}\n"));
        assert!(p.starts_with("sinks[0] (\"bus\").url: "), "{p}");
        assert!(p.contains(why), "{url}: {p}");
        assert!(!p.contains("hunter2") && !p.contains("s3cr3t"), "{p}");
    }
    let p = problem("subject = \"x\"\n");
    assert!(p.contains(".url: missing"), "{p}");
}

#[test]
fn a_bad_subject_is_refused_naming_the_key() {
    let p = problem(&format!("{URL}subject = \"orders.{{state}}\"\n"));
    assert!(p.starts_with("sinks[0] (\"bus\").subject: "), "{p}");
    assert!(p.contains("{state}"), "{p}");
}

#[test]
fn each_way_to_authenticate_is_read() {
    let env = |k: &str| (k == "CREDENTIALS_DIRECTORY").then(|| "/run/creds".to_string());
    let s = ok(&format!("{URL}token_env = \"NATS_TOKEN\"\n"));
    assert_eq!(s.auth, Auth::Token(SecretSource::Env("NATS_TOKEN".into())));
    let s = ok(&format!(
        "{URL}token_file = \"/etc/orderwatch/nats.token\"\n"
    ));
    assert_eq!(
        s.auth,
        Auth::Token(SecretSource::File("/etc/orderwatch/nats.token".into()))
    );
    let s = ok(&format!(
        "{URL}user = \"orderwatch\"\npassword_env = \"NATS_PASSWORD\"\n"
    ));
    assert_eq!(
        s.auth,
        Auth::User {
            user: "orderwatch".into(),
            password: SecretSource::Env("NATS_PASSWORD".into())
        }
    );
    let s = ok(&format!(
        "{URL}credentials_file = \"/etc/orderwatch/nats.creds\"\n"
    ));
    assert_eq!(
        s.auth,
        Auth::Credentials(SecretSource::File("/etc/orderwatch/nats.creds".into()))
    );
    // The systemd credential: a token, or the password when `user` is set.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("nats-bus"), "tok\n").unwrap();
    let creds_dir = dir.path().display().to_string();
    let env_with = |k: &str| (k == "CREDENTIALS_DIRECTORY").then(|| creds_dir.clone());
    let credential = SecretSource::Credential {
        dir: dir.path().to_path_buf(),
        name: "nats-bus".into(),
    };
    let (s, p) = read(URL, &env_with);
    assert!(p.is_empty(), "{p:?}");
    assert_eq!(s.unwrap().auth, Auth::Token(credential.clone()));
    let (s, p) = read(&format!("{URL}user = \"ow\"\n"), &env_with);
    assert!(p.is_empty(), "{p:?}");
    assert_eq!(
        s.unwrap().auth,
        Auth::User {
            user: "ow".into(),
            password: credential
        }
    );
    // Without the credential file there, no key means no authentication.
    let (s, p) = read(URL, &env);
    assert!(p.is_empty(), "{p:?}");
    assert_eq!(s.unwrap().auth, Auth::None);
}

#[test]
fn mixed_or_incomplete_authentication_is_refused() {
    for (keys, key, why) in [
        (
            "token_env = \"T\"\nuser = \"u\"\npassword_env = \"P\"\n",
            "token_env",
            "one way to authenticate",
        ),
        (
            "credentials_file = \"/x.creds\"\ntoken_env = \"T\"\n",
            "credentials_file",
            "one way to authenticate",
        ),
        (
            "token_env = \"T\"\ntoken_file = \"/t\"\n",
            "token_file",
            "not both",
        ),
        ("user = \"u\"\n", "password_env", "needs a password"),
        ("password_env = \"P\"\n", "user", "need the user"),
        (
            "user = \"a b\"\npassword_env = \"P\"\n",
            "user",
            "not a NATS user name",
        ),
    ] {
        let p = problem(&format!("{URL}{keys}"));
        assert!(p.starts_with(&format!("sinks[0] (\"bus\").{key}: ")), "{p}");
        assert!(p.contains(why), "{p}");
    }
}

#[test]
fn max_in_flight_is_bounded_and_split_into_calls() {
    assert!(problem(&format!("{URL}max_in_flight = 0\n")).contains(".max_in_flight: "));
    assert!(problem(&format!("{URL}max_in_flight = 5000\n")).contains("between 1 and 4096"));
    assert_eq!(split(256), (2, 128));
    assert_eq!(split(1), (1, 1));
    assert_eq!(split(100), (1, 100));
    assert_eq!(split(300), (3, 100));
    for n in 1..=4096 {
        let (calls, batch) = split(n);
        assert!(calls * batch <= n, "{n}: {calls} x {batch}");
        assert!(calls * batch * 2 > n, "{n}: {calls} x {batch} wastes half");
        assert!(batch <= 128);
    }
}

fn ctx() -> BuildContext<'static> {
    BuildContext {
        name: "bus",
        source: "https://www.digicert.com/services/v2",
        give_up_after: Duration::from_secs(3 * 24 * 3600),
        owner: true,
    }
}

/// A well-formed `.creds` file (the JWT is not checked client-side; the
/// seed is the example from NATS's documentation).
const CREDS: &str = include_str!("../../../tests/fixtures/nats-example.creds");

#[test]
fn build_reads_secrets_and_names_the_key_of_one_it_cannot_read() {
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("ow.creds");
    std::fs::write(&creds, CREDS).unwrap();
    let s = ok(&format!("{URL}credentials_file = {:?}\n", creds.display()));
    assert!(s.build(&ctx()).is_ok());

    std::fs::write(&creds, "token=hunter2\n").unwrap();
    let err = s.build(&ctx()).err().unwrap();
    assert_eq!(err.at, ".credentials_file");
    assert!(err.message.contains("is not a NATS .creds file"), "{err}");
    assert!(!err.message.contains("hunter2"), "{err}");

    let missing = ok(&format!(
        "{URL}credentials_file = {:?}\n",
        Path::new("/nonexistent/ow.creds")
    ));
    let err = missing.build(&ctx()).err().unwrap();
    assert_eq!(err.at, ".credentials_file");
    assert!(err.message.contains("/nonexistent/ow.creds"), "{err}");

    // A device or a FIFO in its place is refused at once, never read forever.
    let zero = ok(&format!("{URL}credentials_file = \"/dev/zero\"\n"));
    let err = zero.build(&ctx()).err().unwrap();
    assert!(err.message.contains("not a regular file"), "{err}");

    let s = ok(&format!("{URL}token_env = \"OW_NATS_TEST_UNSET_TOKEN\"\n"));
    let err = s.build(&ctx()).err().unwrap();
    assert_eq!(err.at, ".token_env");
    assert!(err.message.contains("OW_NATS_TEST_UNSET_TOKEN"), "{err}");
}

#[test]
fn describe_and_debug_show_where_secrets_come_from_never_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pw");
    std::fs::write(&file, "hunter2\n").unwrap();
    let s = ok(&format!(
        "{URL}user = \"ow\"\npassword_file = {:?}\nsubject = \"dc.{{order_id}}\"\n",
        file.display()
    ));
    assert!(s.build(&ctx()).is_ok());
    let shown = format!("{} {s:?}", s.describe());
    assert!(shown.contains("password from file"), "{shown}");
    assert!(shown.contains("dc.{order_id}"), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert_eq!(s.secrets(), vec![("password", &SecretSource::File(file))]);
}

#[tokio::test]
async fn build_connects_to_nothing() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let s = ok(&format!("url = \"nats://{addr}\"\n"));
    let sink = s.build(&ctx()).unwrap();
    assert_eq!((sink.concurrency(), sink.batch_size()), (2, 128));
    let accepted = tokio::time::timeout(Duration::from_millis(300), listener.accept()).await;
    assert!(accepted.is_err(), "build connected to {addr}");
}

fn hints() -> Hints {
    Hints {
        servers: "nats://127.0.0.1:4222".into(),
        auth: "token from environment variable NATS_TOKEN".into(),
        filter: "certcentral.orders.*".into(),
        give_up_after: Duration::from_secs(3 * 24 * 3600),
    }
}

fn error_of(o: &Outcome) -> (&'static str, &str) {
    match o {
        Outcome::Delivered => ("delivered", ""),
        Outcome::Retry { error, .. } => ("retry", error),
        Outcome::Dead { error } => ("dead", error),
        Outcome::Gone { error } => ("gone", error),
    }
}

#[test]
fn publish_failures_are_retried_and_say_which_failure_it_was() {
    let subject = "certcentral.orders.issued";
    let o = publish_outcome(PublishErrorKind::StreamNotFound, "", subject, &hints());
    let (kind, e) = error_of(&o);
    assert_eq!(kind, "retry");
    assert!(e.contains("no JetStream stream stores subject certcentral.orders.issued"));
    assert!(e.contains("503 no responders"), "{e}");
    assert!(
        e.contains("nats stream add ORDERWATCH --subjects 'certcentral.orders.*' --storage file --dupe-window 72h"),
        "{e}"
    );
    for (k, says) in [
        (
            PublishErrorKind::TimedOut,
            "no acknowledgement from JetStream within 10s",
        ),
        (PublishErrorKind::BrokenPipe, "connection to NATS closed"),
        (
            PublishErrorKind::Other,
            "JetStream refused the publish to certcentral.orders.issued: insufficient resources",
        ),
        (PublishErrorKind::MaxAckPending, "JetStream refused"),
    ] {
        let o = publish_outcome(k, "insufficient resources", subject, &hints());
        let (kind, e) = error_of(&o);
        assert_eq!(kind, "retry", "{e}");
        assert!(e.contains(says), "{e}");
    }
    let o = publish_outcome(
        PublishErrorKind::MaxPayloadExceeded,
        "too big",
        subject,
        &hints(),
    );
    assert_eq!(error_of(&o).0, "dead");
}

#[test]
fn connect_failures_are_retried_and_bad_credentials_say_so() {
    let o = connect_outcome(
        ConnectErrorKind::AuthorizationViolation,
        "authorization violation",
        &hints(),
    );
    let (kind, e) = error_of(&o);
    assert_eq!(kind, "retry");
    assert!(
        e.contains("refused orderwatch's credentials (token from environment variable NATS_TOKEN)"),
        "{e}"
    );
    assert!(e.contains("restart orderwatch"), "{e}");
    let o = connect_outcome(
        ConnectErrorKind::Io,
        "Connection refused (os error 111)",
        &hints(),
    );
    let (kind, e) = error_of(&o);
    assert_eq!(kind, "retry");
    assert!(
        e.contains("cannot connect to NATS at nats://127.0.0.1:4222: Connection refused"),
        "{e}"
    );
    let o = connect_outcome(ConnectErrorKind::Tls, "invalid peer certificate", &hints());
    assert!(error_of(&o).1.contains("TLS with NATS"));
}
