//! The exec sink runs a command per event: the event on stdin and in
//! `ORDERWATCH_*` variables, exit 0 delivered, other exits retried with the
//! backoff (or dead for `dead_exit_codes`), a hanging command killed with
//! its process group at the timeout, megabytes of output drained with only
//! 4 KiB kept, and a command that cannot run refused by `check`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::{Sink, World, ago, eventually, text};

/// Writes an executable shell script `name` into the world's directory.
fn script(w: &World, name: &str, body: &str) -> PathBuf {
    let path = w.path(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

/// An exec sink named `run` running `program` with `args`, retrying quickly.
fn exec_sink(program: &Path, args: &[&str]) -> Sink {
    let mut command = vec![program.display().to_string()];
    command.extend(args.iter().map(|a| a.to_string()));
    Sink::new("run", "exec")
        .with("command", command)
        .quick_retries()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_event_reaches_the_command_on_stdin_and_in_its_environment() {
    let mut w = World::new().await;
    let out = w.path("out");
    std::fs::create_dir(&out).unwrap();
    let hook = script(
        &w,
        "hook.sh",
        &format!(
            "cat > {o}/$ORDERWATCH_EVENT_ID.json\n\
             printf '%s|%s|%s|%s|%s|%s|%s\\n' \"$1\" \"$ORDERWATCH_ORDER_ID\" \"$ORDERWATCH_STATUS\" \
             \"$ORDERWATCH_PREVIOUS_STATUS\" \"$ORDERWATCH_SINK\" \"${{OW_TEST_KEY:-no key}}\" \"$ORDERWATCH_EVENT_TYPE\" \
             > {o}/$ORDERWATCH_EVENT_ID.env\n\
             echo handled $ORDERWATCH_EVENT_ID",
            o = out.display()
        ),
    );
    w.add_sink(exec_sink(&hook, &["--flag"]));
    w.sim.set_status(7, 70, "pending", ago(60));
    w.once();
    w.sim.set_status(7, 70, "issued", ago(0));
    let run = w.once();

    let event: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("7:issued.json")).unwrap()).unwrap();
    assert_eq!(event["id"], "7:issued");
    assert_eq!(event["data"]["previous_status"], "pending");
    assert_eq!(
        std::fs::read_to_string(out.join("7:issued.env")).unwrap(),
        "--flag|7|issued|pending|run|no key|com.digicert.certcentral.order.status_changed\n",
        "the API key's variable must not reach the command"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("7:pending.env")).unwrap(),
        "--flag|7|pending||run|no key|com.digicert.certcentral.order.status_changed\n"
    );
    assert!(
        text(&run.stderr).contains("handled 7:issued"),
        "output goes to the log"
    );
    let ledger = w.deliveries(&["--sink", "run", "--state", "delivered"]);
    assert_eq!(ledger.len(), 2, "{ledger:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_exiting_1_is_retried_until_it_exits_0() {
    let mut w = World::new().await;
    let count = w.path("count");
    let hook = script(
        &w,
        "flaky.sh",
        &format!(
            "n=$(cat {c} 2>/dev/null || echo 0); echo $((n+1)) > {c}\n\
             if [ \"$n\" -lt 1 ]; then echo 'database is busy' >&2; exit 1; fi",
            c = count.display()
        ),
    );
    w.add_sink(exec_sink(&hook, &[]));
    w.sim.set_status(1, 10, "issued", ago(10));
    let run = w.once();
    let log = text(&run.stderr);
    assert!(
        log.contains("exited with 1; output: database is busy"),
        "{log}"
    );
    let rows = w.deliveries(&["--sink", "run"]);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["state"], "delivered");
    assert_eq!(rows[0]["attempts"], 2);
    assert_eq!(std::fs::read_to_string(&count).unwrap().trim(), "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_command_is_killed_with_its_children_at_the_timeout_and_retried() {
    let mut w = World::new().await;
    let pids = w.path("pids");
    let hook = script(
        &w,
        "hang.sh",
        &format!(
            "if [ ! -e {p} ]; then sleep 600 & echo $! > {p}; sleep 600; fi",
            p = pids.display()
        ),
    );
    w.add_sink(exec_sink(&hook, &[]).with("timeout", "500ms"));
    w.sim.set_status(1, 10, "issued", ago(10));
    let daemon = w.spawn_ready().await;
    let delivered = eventually(Duration::from_secs(30), || {
        w.deliveries(&["--sink", "run", "--state", "delivered"])
            .len()
            == 1
    })
    .await;
    assert!(delivered, "log:\n{}", daemon.log_text());
    assert!(
        daemon
            .log_text()
            .contains("did not finish within 500ms; its process group was killed"),
        "{}",
        daemon.log_text()
    );
    let child: i32 = std::fs::read_to_string(&pids)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let alive = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.split(' ').nth(2).map(|st| st != "Z"))
            .unwrap_or(false)
    };
    let gone = eventually(Duration::from_secs(5), || !alive(child)).await;
    assert!(
        gone,
        "the hook's background child {child} outlived the timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn megabytes_of_output_keep_only_4_kib_in_the_ledger() {
    let mut w = World::new().await;
    let hook = script(
        &w,
        "loud.sh",
        "head -c 20000000 /dev/zero | tr '\\0' x; echo; echo 'stderr tail' >&2; exit 9",
    );
    w.add_sink(exec_sink(&hook, &[]).with("dead_exit_codes", vec![9]));
    w.sim.set_status(1, 10, "issued", ago(10));
    let run = w.run(&["run", "--once"]);
    let log = text(&run.stderr);
    assert!(log.len() < 64 * 1024, "the log got {} bytes", log.len());
    let dead = w.deliveries(&["--sink", "run", "--state", "dead"]);
    assert_eq!(dead.len(), 1, "{dead:?}; log:\n{log}");
    let error = dead[0]["last_error"].as_str().unwrap();
    assert!(
        error.contains("exited with 9 (listed in dead_exit_codes)"),
        "{error}"
    );
    assert!(error.contains("more bytes not kept"), "{error}");
    assert!(error.len() < 4 * 1024 + 300, "{} bytes kept", error.len());
    assert_eq!(dead[0]["attempts"], 1, "dead at once, not retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_refuses_a_command_that_is_missing_not_executable_or_relative() {
    // What the config alone shows.
    let mut w = World::new().await;
    w.add_sink(Sink::new("rel", "exec").with("command", vec!["bin/hook"]));
    w.add_sink(Sink::new("none", "exec").with("command", Vec::<String>::new()));
    w.add_sink(
        Sink::new("codes", "exec")
            .with("command", vec!["sh"])
            .with("dead_exit_codes", vec![0]),
    );
    let out = w.run(&["check"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for expected in [
        "sinks[0] (\"rel\").command: \"bin/hook\" is a relative path",
        "sinks[1] (\"none\").command: missing or empty",
        "sinks[2] (\"codes\").dead_exit_codes: 0 is not an exit code of a failure",
    ] {
        assert!(err.contains(expected), "no {expected:?} in:\n{err}");
    }
    // What building the sinks finds on disk, with the same code as `run`.
    let mut w = World::new().await;
    let plain = w.path("plain.sh");
    std::fs::write(&plain, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644)).unwrap();
    w.add_sink(exec_sink(&w.path("missing.sh"), &[]));
    w.add_sink(Sink::new("plain", "exec").with("command", vec![plain.display().to_string()]));
    let out = w.run(&["check"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for expected in [
        "sinks[0] (\"run\").command: ",
        "missing.sh\": No such file",
        "sinks[1] (\"plain\").command: ",
        "is not executable; chmod +x",
    ] {
        assert!(err.contains(expected), "no {expected:?} in:\n{err}");
    }
    let run = w.run(&["run", "--once"]);
    assert_eq!(run.status.code(), Some(2), "run refuses it too");
    // A bare name found in PATH is fine.
    let mut ok = World::new().await;
    ok.add_sink(Sink::new("sh", "exec").with("command", vec!["sh", "-c", "cat >/dev/null"]));
    let out = ok.run(&["check"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout)
            .contains("sink sh: exec sh -c cat >/dev/null (concurrency 1, timeout 30s)"),
        "{}",
        text(&out.stdout)
    );
}
