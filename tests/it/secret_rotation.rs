//! A webhook secret is rotated without a moment in which a receiver refuses
//! events: the secret source lists old and new secrets, every one signs, and
//! receivers holding either one alone verify every request, as the official
//! Standard Webhooks library does. A bad secret among good ones is refused
//! by `check` and by a reload, named by its position, never shown.

use std::time::Duration;

use crate::support::receiver::{Delivery, Receiver, SECRET};
use crate::support::{Daemon, World, ago, eventually, skip, standard_webhooks, text};

const WAIT: Duration = Duration::from_secs(30);
/// The secret rotated to (32 bytes, base64).
const NEW: &str = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// Records a transition for `order` and returns its accepted delivery.
async fn deliver(w: &World, rx: &Receiver, daemon: &Daemon, order: i64) -> Delivery {
    let id = format!("{order}:issued");
    w.sim.set_status(order, 100 + order, "issued", ago(0));
    let arrived = eventually(WAIT, || rx.accepted_ids().contains(&id)).await;
    assert!(arrived, "{id} was not delivered:\n{}", daemon.log_text());
    rx.accepted()
        .into_iter()
        .find(|d| d.id == id)
        .expect("accepted")
}

/// Rewrites the secret file and reloads.
async fn rotate(w: &World, daemon: &Daemon, secrets: &str, reloads: usize) {
    std::fs::write(w.path("secret.txt"), secrets).expect("write secrets");
    daemon.signal("HUP");
    let done = eventually(WAIT, || {
        daemon
            .log_text()
            .matches("SIGHUP: configuration reloaded")
            .count()
            == reloads
    })
    .await;
    assert!(done, "reload {reloads} not done:\n{}", daemon.log_text());
}

/// Both secrets verify `d` on their own, by the official library if it is
/// installed and by our own HMAC check in any case.
fn verifies_with_each(d: &Delivery, secrets: &[&str]) {
    for secret in secrets {
        assert!(
            standard_webhooks::signed_with(d, secret),
            "{} does not verify with one of the secrets: {}",
            d.id,
            d.signature
        );
        match standard_webhooks::verify(std::slice::from_ref(d), secret) {
            Some(n) => assert_eq!(n, 1),
            None => skip(
                "PYTHON_STANDARDWEBHOOKS",
                "python3 with the standardwebhooks library is not installed; rotation checked in Rust only",
            ),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_a_secret_by_reloads_keeps_every_request_verifiable() {
    let (w, rx) = World::with_webhook().await;
    let mut daemon = w.spawn_ready().await;

    // Before: the old secret alone, one signature.
    let before = deliver(&w, &rx, &daemon, 1).await;
    assert_eq!(
        before.signature.split(' ').count(),
        1,
        "{}",
        before.signature
    );
    verifies_with_each(&before, &[SECRET]);

    // 1. Add the new secret: every request carries both signatures, so
    //    receivers can switch to the new secret at their own pace.
    rotate(&w, &daemon, &format!("{SECRET}\n{NEW}\n"), 1).await;
    let both = deliver(&w, &rx, &daemon, 2).await;
    assert_eq!(both.signature.split(' ').count(), 2, "{}", both.signature);
    verifies_with_each(&both, &[SECRET, NEW]);

    // 2. Receivers updated: drop the old secret.
    rotate(&w, &daemon, &format!("{NEW}\n"), 2).await;
    let after = deliver(&w, &rx, &daemon, 3).await;
    assert_eq!(after.signature.split(' ').count(), 1, "{}", after.signature);
    verifies_with_each(&after, &[NEW]);
    assert!(!standard_webhooks::signed_with(&after, SECRET));

    // A reload never showed a secret.
    let log = daemon.log_text();
    assert!(!log.contains(&NEW[6..]) && !log.contains(&SECRET[6..]));
    assert!(daemon.terminate(WAIT).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_secret_among_good_ones_fails_check_and_the_reload_by_position() {
    let (w, rx) = World::with_webhook().await;
    let secrets = w.path("secret.txt");
    std::fs::write(&secrets, format!("{SECRET}\nwhsec_c2hvcnQ=\n{NEW}\n")).unwrap();
    let out = w.run(&["check"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("secret_file"), "{err}");
    assert!(err.contains(&secrets.display().to_string()), "{err}");
    assert!(err.contains("secret 2 of 3"), "{err}");
    assert!(err.contains("shorter than 24 bytes"), "{err}");
    assert!(
        !err.contains("c2hvcnQ") && !err.contains(&SECRET[6..]),
        "{err}"
    );

    // Running with good secrets, a reload with the bad list keeps them.
    std::fs::write(&secrets, format!("{SECRET}\n")).unwrap();
    let mut daemon = w.spawn_ready().await;
    deliver(&w, &rx, &daemon, 1).await;
    std::fs::write(&secrets, format!("{SECRET} whsec_!!!\n")).unwrap();
    daemon.signal("HUP");
    daemon.wait_for_log("keeping the running one").await;
    let log = daemon.log_text();
    assert!(log.contains("secret 2 of 2"), "{log}");
    let still = deliver(&w, &rx, &daemon, 2).await;
    verifies_with_each(&still, &[SECRET]);
    assert!(daemon.terminate(WAIT).success());
}
