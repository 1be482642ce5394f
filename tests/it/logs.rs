//! Logs on stderr: human lines by default, one JSON object per line with
//! `--log-format json` (for log shippers); one line per poll at debug and per
//! transition at info; errors carry their context; secrets never appear.

use std::time::Duration;

use serde_json::Value;

use crate::support::receiver::{Receiver, SECRET};
use crate::support::sim::Fault;
use crate::support::{KEY, SECRET_VAR, Sink, World, ago, eventually, text};

/// A webhook sink whose secret comes from the environment.
fn hook(r: &Receiver) -> Sink {
    Sink::new("hook", "webhook")
        .with("url", r.url())
        .with("secret_env", SECRET_VAR)
        .with("backoff_initial", "100ms")
}

/// The secret's key material, as it would appear if logged decoded or raw.
fn secret_parts() -> [&'static str; 2] {
    [SECRET, SECRET.trim_start_matches("whsec_")]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line_with_polls_and_transitions_and_no_secrets() {
    let mut w = World::new().await;
    let receiver = Receiver::start().await;
    w.file_sink();
    w.add_sink(hook(&receiver));
    w.sim.set_status(1, 11, "pending", ago(90));
    w.sim.set_status(2, 12, "issued", ago(60));
    w.sim.set_status(3, 13, "rejected", ago(30));
    let mut daemon = w.spawn_with(&["--log-format", "json", "run"], |_| {});
    let delivered = eventually(Duration::from_secs(30), || {
        receiver.accepted().len() == 3 && w.file_events().len() == 3
    })
    .await;
    assert!(delivered, "not delivered:\n{}", daemon.log_text());
    // A few more polls, then a clean stop: startup, polls, deliveries and
    // shutdown all end up in the log.
    let polls = |log: &str| log.matches("\"message\":\"poll\"").count();
    assert!(eventually(Duration::from_secs(30), || polls(&daemon.log_text()) >= 3).await);
    assert!(daemon.terminate(Duration::from_secs(30)).success());

    let log = daemon.log_text();
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}\n{log}")))
        .collect();
    assert!(lines.len() >= 5, "{log}");
    for l in &lines {
        assert!(l["timestamp"].is_string(), "{l}");
        assert!(l["level"].is_string(), "{l}");
        assert!(l["fields"]["message"].is_string(), "{l}");
    }
    let with = |message: &str| -> Vec<&Value> {
        lines
            .iter()
            .filter(|l| l["fields"]["message"] == message)
            .collect()
    };
    let transitions = with("transition");
    assert_eq!(transitions.len(), 3, "{log}");
    assert!(transitions.iter().all(|t| t["level"] == "INFO"));
    let issued = transitions
        .iter()
        .find(|t| t["fields"]["order_id"] == 2)
        .expect("order 2 logged");
    assert_eq!(issued["fields"]["status"], "issued");
    assert_eq!(issued["fields"]["event"], "2:issued");
    let polls = with("poll");
    assert!(polls.len() >= 3, "{log}");
    assert!(polls.iter().all(|p| p["level"] == "DEBUG"));
    assert!(!with("stopped").is_empty(), "{log}");

    assert!(!log.contains(KEY), "the API key was logged:\n{log}");
    for s in secret_parts() {
        assert!(!log.contains(s), "the webhook secret was logged:\n{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn human_logs_by_default_and_a_failed_poll_names_its_code_and_url_but_not_the_key() {
    let mut w = World::new().await;
    w.file_sink();
    w.sim.set_status(1, 11, "issued", ago(30));
    let out = w.once();
    let stderr = text(&out.stderr);
    assert!(
        stderr
            .lines()
            .all(|l| serde_json::from_str::<Value>(l).is_err()),
        "JSON without --log-format json:\n{stderr}"
    );
    assert!(
        stderr
            .lines()
            .any(|l| l.contains(" INFO ") && l.contains("transition") && l.contains("1:issued")),
        "{stderr}"
    );

    // The key is revoked: the cycle fails and the log says what and where.
    w.sim.push_fault(Fault::status(401, "invalid_api_key"));
    let out = w.run(&["run", "--once"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.contains(" ERROR ") && l.contains("poll cycle failed"))
        .unwrap_or_else(|| panic!("no error line:\n{stderr}"));
    assert!(line.contains("invalid_api_key"), "{line}");
    assert!(line.contains("401"), "{line}");
    assert!(line.contains(&w.sim.base_url()), "no URL: {line}");
    assert!(!stderr.contains(KEY), "the API key was logged:\n{stderr}");
}

/// Runs `run --once` with stderr in a file and `JOURNAL_STREAM` naming
/// `journal` (that file, or another one), colour not suppressed: the exit
/// code and what went to stderr.
fn once_with_journal_stream(w: &World, journal: &std::path::Path) -> (Option<i32>, String) {
    use std::os::unix::fs::MetadataExt;
    let log = w.path("stderr.log");
    let file = std::fs::File::create(&log).unwrap();
    let meta = std::fs::metadata(journal).unwrap();
    let mut c = w.command(&["run", "--once"]);
    c.env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .env_remove("NO_COLOR")
        .stderr(file);
    let status = c.status().unwrap();
    (status.code(), std::fs::read_to_string(&log).unwrap())
}

/// Every line starts with an sd-daemon priority and carries neither colour
/// nor a timestamp of its own (journald stamps each entry).
fn assert_journal_lines(log: &str) {
    assert!(!log.contains('\u{1b}'), "colour codes:\n{log}");
    for line in log.lines() {
        let (prefix, rest) = line.split_at(3.min(line.len()));
        assert!(
            ["<3>", "<4>", "<6>", "<7>"].contains(&prefix),
            "no priority prefix: {line:?}\n{log}"
        );
        assert!(
            !rest.trim_start().starts_with(|c: char| c.is_ascii_digit()),
            "a timestamp: {line:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_the_journal_every_line_carries_its_priority_and_no_colour_or_timestamp() {
    let mut w = World::new().await;
    w.file_sink();
    w.sim.set_status(1, 11, "issued", ago(30));
    let journal = w.path("stderr.log");
    std::fs::write(&journal, "").unwrap();

    let (code, log) = once_with_journal_stream(&w, &journal);
    assert_eq!(code, Some(0), "{log}");
    assert_journal_lines(&log);
    assert!(
        log.lines()
            .any(|l| l.starts_with("<6>") && l.contains("transition")),
        "{log}"
    );
    assert!(
        log.lines().any(|l| l.starts_with("<7>")),
        "debug lines (RUST_LOG=orderwatch=debug) at priority 7:\n{log}"
    );

    // The key is revoked: the failed cycle and the final error (printed
    // after the runtime is gone) are both at priority err.
    w.sim.push_fault(Fault::status(401, "invalid_api_key"));
    let (code, log) = once_with_journal_stream(&w, &journal);
    assert_eq!(code, Some(1), "{log}");
    assert_journal_lines(&log);
    let failed = log
        .lines()
        .find(|l| l.contains("poll cycle failed"))
        .unwrap_or_else(|| panic!("no poll failure:\n{log}"));
    assert!(failed.starts_with("<3>"), "an error below err: {failed}");
    assert!(
        log.lines()
            .last()
            .is_some_and(|l| l.starts_with("<3>error: ")),
        "{log}"
    );

    // JOURNAL_STREAM inherited, but stderr is another file: plain lines,
    // and no colour in a file either.
    let other = w.path("other");
    std::fs::write(&other, "").unwrap();
    w.sim.push_fault(Fault::status(401, "invalid_api_key"));
    let (_, log) = once_with_journal_stream(&w, &other);
    assert!(!log.contains('\u{1b}'), "colour codes in a file:\n{log}");
    assert!(log.lines().all(|l| !l.starts_with('<')), "{log}");
    assert!(log.lines().any(|l| l.contains(" ERROR ")), "{log}");
}
