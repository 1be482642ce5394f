//! `orderwatch test-sink NAME` sends one marked test event through the
//! sink's real path and says what came back: a signed webhook request the
//! receiver verifies, the exec command's exit and output, a line in the
//! file. It records nothing, exits 1 when the event is not delivered (a
//! 4xx, an unreachable host, a failing command) and 2 for an unknown sink.

use std::os::unix::fs::PermissionsExt;

use crate::support::receiver::Reply;
use crate::support::{Sink, World, free_port, read_jsonl, text};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_event_reaches_the_receiver_signed_and_nothing_is_recorded() {
    let (w, rx) = World::with_webhook().await;
    rx.set_default(Reply::Body(202, "queued, thanks".into()));
    let out = w.run(&["test-sink", "hook"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(stdout.contains("delivered"), "{stdout}");
    assert!(
        stdout.contains("answer: HTTP 202 Accepted: queued, thanks"),
        "{stdout}"
    );
    let got = rx.deliveries();
    assert_eq!(got.len(), 1);
    let d = &got[0];
    assert!(
        d.signature_ok,
        "the receiver could not verify the signature"
    );
    assert_eq!(d.content_type, "application/cloudevents+json");
    assert!(d.id.starts_with("test:"), "{}", d.id);
    assert_eq!(d.body["id"], d.id.as_str());
    assert_eq!(d.body["type"], "orderwatch.test");
    assert_eq!(d.body["subject"], "sinks/hook");
    assert!(stdout.contains(&d.id), "the id is shown: {stdout}");
    // Nothing was recorded: the command never opened the store.
    assert!(!w.store().exists(), "test-sink created the store");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_or_an_unreachable_receiver_exits_1_with_what_happened() {
    let (mut w, rx) = World::with_webhook().await;
    rx.set_default(Reply::Body(400, "no such tenant".into()));
    let out = w.run(&["test-sink", "hook"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("refused (a real event would be dead at once)"),
        "{err}"
    );
    assert!(
        err.contains("HTTP 400 Bad Request: no such tenant"),
        "{err}"
    );

    let nobody = format!("http://127.0.0.1:{}/hook", free_port());
    w.add_sink(w.hook("down", &nobody));
    let out = w.run(&["test-sink", "down"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("not delivered (a real event would be retried)"),
        "{err}"
    );
    assert!(err.contains(&format!("POST {nobody} failed")), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_sink_is_a_usage_error_naming_the_sinks_there_are() {
    let (w, rx) = World::with_webhook().await;
    let out = w.run(&["test-sink", "hoook"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("no sink named \"hoook\""), "{err}");
    assert!(err.contains("configured sinks: hook"), "{err}");
    assert_eq!(rx.arrivals(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_and_file_sinks_run_and_write_the_test_event() {
    let mut w = World::new().await;
    let hook = w.path("hook.sh");
    std::fs::write(
        &hook,
        "#!/bin/sh\nread -r line; echo \"got $ORDERWATCH_EVENT_TYPE [$ORDERWATCH_ORDER_ID]\"\nexit ${FAIL:-0}\n",
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    w.add_sink(Sink::new("run", "exec").with("command", vec![hook.display().to_string()]));
    w.add_sink(
        Sink::new("fails", "exec")
            .with("command", vec![hook.display().to_string()])
            .with("pass_env", vec!["FAIL"]),
    );
    w.file_sink();

    let out = w.run(&["test-sink", "run"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("answer: exit 0; output: got orderwatch.test []"),
        "{}",
        text(&out.stdout)
    );

    let mut failing = w.command(&["test-sink", "fails"]);
    failing.env("FAIL", "3");
    let out = crate::support::output_within(failing, std::time::Duration::from_secs(30));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("exited with 3; output: got orderwatch.test []"),
        "{err}"
    );

    let out = w.run(&["test-sink", "archive"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines = read_jsonl(&w.events_file());
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["type"], "orderwatch.test");

    // The file ends in the middle of an event line, as while a running
    // daemon appends a batch: test-sink leaves it alone and says so.
    let mut mid_write = std::fs::read(w.events_file()).unwrap();
    mid_write.extend_from_slice(b"{\"specversion\":\"1.0\",\"id\":\"7:iss");
    std::fs::write(w.events_file(), &mid_write).unwrap();
    let out = w.run(&["test-sink", "archive"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("in the middle of an event line"), "{err}");
    assert_eq!(
        std::fs::read(w.events_file()).unwrap(),
        mid_write,
        "untouched"
    );
}
