//! `orderwatch demo`: zero configuration, CloudEvents (with order details)
//! on stdout within seconds, a clean exit on Ctrl-C and nothing left behind.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::bin;

#[test]
fn demo_prints_cloudevents_and_exits_0_on_sigint() {
    let mut child = Command::new(bin())
        .arg("demo")
        .env_remove("ORDERWATCH_CONFIG")
        .env_remove("NOTIFY_SOCKET")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let start = Instant::now();
    let mut events = Vec::new();
    while events.len() < 3 && start.elapsed() < Duration::from_secs(20) {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            let v: serde_json::Value =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
            events.push(v);
        }
    }
    assert!(events.len() >= 3, "only {} events in 20 s", events.len());
    for e in &events {
        assert_eq!(e["specversion"], "1.0");
        assert_eq!(e["type"], "com.digicert.certcentral.order.status_changed");
        assert!(e["id"].as_str().unwrap().contains(':'));
        // The demo turns order details on: every event carries them.
        let order = e["data"]["order"].as_object();
        assert!(
            order.is_some_and(|o| o["common_name"].is_string()),
            "no order details: {e}"
        );
    }
    let status = Command::new("kill")
        .arg("-INT")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "demo did not exit after SIGINT");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(exit.code(), Some(0));
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("orderwatch demo"), "{stderr}");
    // The store lived in a temp dir that is gone now.
    let store = stderr
        .split("Store: ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .unwrap_or_else(|| panic!("no store path in: {stderr}"));
    assert!(!std::path::Path::new(store).exists(), "{store} left behind");
}
