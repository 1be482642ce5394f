//! `orderwatch check --online` adds what only the network can tell: one
//! authenticated request to CertCentral (a wrong key is named, with both
//! instances) and a connection to every webhook receiver (TCP, and TLS for
//! https) without delivering anything; every failure listed, exit 1. Plain
//! `check` stays offline.

use std::time::Duration;

use crate::support::{World, free_port, output_within, text};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_check_reaches_the_api_and_every_receiver_without_delivering() {
    let (mut w, rx) = World::with_webhook().await;
    w.file_sink();
    let before = w.sim.queries().len();
    let out = w.run(&["check", "--online"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}{stdout}", text(&out.stderr));
    assert!(stdout.contains("online:"), "{stdout}");
    assert!(
        stdout.contains("accepted the API key (0 order(s) changed in the last minute)"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "sink hook: connected to {} ({})",
            rx.url(),
            rx.addr
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("sink archive: nothing to connect to (file)"),
        "{stdout}"
    );
    assert_eq!(rx.arrivals(), 0, "the receiver got a request");
    assert_eq!(w.sim.queries().len(), before + 1, "exactly one API request");

    // Plain check sends nothing at all.
    let out = w.run(&["check"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!text(&out.stdout).contains("online:"));
    assert_eq!(w.sim.queries().len(), before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_and_unreachable_receivers_are_all_listed_with_exit_1() {
    let (mut w, rx) = World::with_webhook().await;
    let nobody = format!("http://127.0.0.1:{}/hook", free_port());
    w.add_sink(w.hook("down", &nobody));
    // TLS to a receiver that speaks plain HTTP: the handshake fails.
    let plain = format!("https://127.0.0.1:{}/hook", rx.addr.port());
    w.add_sink(w.hook("notls", &plain));
    let mut cmd = w.command(&["check", "--online"]);
    cmd.env("OW_TEST_KEY", "not-the-key");
    let out = output_within(cmd, Duration::from_secs(60));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("3 failure(s) online"), "{err}");
    assert!(
        err.contains("refused the API key: invalid_api_key"),
        "{err}"
    );
    assert!(err.contains("instance = \"eu\""), "{err}");
    assert!(
        err.contains(&format!("sink down: cannot connect to {nobody}")),
        "{err}"
    );
    assert!(
        err.contains(&format!("sink notls: TLS handshake with {plain}")),
        "{err}"
    );
    assert!(!err.contains("not-the-key"), "the key was shown: {err}");
    // The working receiver is still reported as reached, and got nothing.
    assert!(
        text(&out.stdout).contains("sink hook: connected to"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(rx.deliveries().len(), 0);

    // Offline, the same config is fine: check runs before every start and
    // must not fail because a receiver is down.
    let mut cmd = w.command(&["check"]);
    cmd.env("OW_TEST_KEY", "not-the-key");
    let out = output_within(cmd, Duration::from_secs(60));
    assert!(out.status.success(), "{}", text(&out.stderr));
}
