//! The NATS JetStream sink against a real `nats-server` (issue 13): every
//! transition lands in the stream exactly once, across SIGKILLs of
//! orderwatch, a server that goes away, `redeliver`; subjects follow the
//! template; a missing stream and bad credentials are retried with a
//! message that says what to do; `check --online` finds the stream and
//! `test-sink` publishes one marked event. The stream is read back by a
//! consumer.
//!
//! The server, the consumer and the publish counter are in
//! `support/nats.rs`.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::support::nats::{NatsServer, Publishes, Stored, read_stream, stream_len};
use crate::support::{Sink, World, ago, eventually, output_within, text};

const WAIT: Duration = Duration::from_secs(90);

/// A NATS sink named `bus` publishing to `url`, with quick retries and
/// `give_up_after` matching the test stream's one-hour duplicate window.
fn bus(url: &str) -> Sink {
    Sink::new("bus", "nats")
        .with("url", url)
        .quick_retries()
        .with("give_up_after", "1h")
}

/// Ids of the messages in the stream, in stream order.
fn msg_ids(stored: &[Stored]) -> Vec<String> {
    stored
        .iter()
        .map(|m| m.msg_id.clone().unwrap_or_default())
        .collect()
}

fn ledger_states(w: &World) -> HashMap<String, usize> {
    let mut states = HashMap::new();
    for row in w.deliveries(&["--sink", "bus"]) {
        let state = row["state"].as_str().unwrap_or_default().to_string();
        *states.entry(state).or_insert(0) += 1;
    }
    states
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_validates_the_nats_keys_and_connects_to_nothing() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut w = World::new().await;
    w.add_sink(
        bus(&format!("nats://{addr}"))
            .with("subject", "certcentral.{order_id}.{status}")
            .with("token_env", "OW_NATS_TOKEN"),
    );
    let mut cmd = w.command(&["check"]);
    cmd.env("OW_NATS_TOKEN", "tok-hunter2");
    let out = output_within(cmd, Duration::from_secs(60));
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        stdout.contains(&format!(
            "sink bus: nats nats://{addr} subject certcentral.{{order_id}}.{{status}} (token from environment variable OW_NATS_TOKEN; up to 256 publishes awaiting their ack)"
        )),
        "{stdout}"
    );
    let accepted = tokio::time::timeout(Duration::from_millis(300), listener.accept()).await;
    assert!(accepted.is_err(), "check connected to the NATS server");

    // A missing token and bad keys: exit 2, each problem naming its key.
    let out = w.run(&["check"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("sinks[0] (\"bus\").token_env: cannot read the NATS token: environment variable OW_NATS_TOKEN is not set"),
        "{stderr}"
    );
    let mut w = World::new().await;
    w.add_sink(
        bus("nats://ow:hunter2@127.0.0.1:4222")
            .with("subject", "orders.>")
            .with("max_in_flight", 0),
    );
    let out = w.run(&["check"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    for key in ["url: holds credentials", "subject: ", "max_in_flight: "] {
        assert!(
            stderr.contains(&format!("(\"bus\").{key}")),
            "{key}: {stderr}"
        );
    }
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subjects_follow_the_template_and_messages_carry_the_file_sinks_bytes() {
    let mut w = World::new().await;
    let Some(server) = NatsServer::start(w.dir.path(), None).await else {
        return;
    };
    let js = server.create_stream().await;
    w.add_sink(bus(&server.url()).with("subject", "certcentral.orders.{status}.{order_id}"));
    w.file_sink();
    w.sim.set_status(1, 101, "pending", ago(60));
    w.sim.set_status(2, 102, "issued", ago(60));
    // Not a status CertCentral sends today; recorded as "reissue%20pending".
    w.sim.set_status(3, 103, " Reissue Pending ", ago(60));
    w.once();
    w.sim.set_status(1, 101, "issued", ago(1));
    w.once();

    let stored = read_stream(&js).await;
    let subjects: HashMap<String, String> = stored
        .iter()
        .map(|m| (m.msg_id.clone().unwrap_or_default(), m.subject.clone()))
        .collect();
    let expected: HashMap<String, String> = [
        ("1:pending", "certcentral.orders.pending.1"),
        ("2:issued", "certcentral.orders.issued.2"),
        (
            "3:reissue%20pending",
            "certcentral.orders.reissue%20pending.3",
        ),
        ("1:issued", "certcentral.orders.issued.1"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(subjects, expected);
    // Byte for byte the events the file sink wrote, in the same order.
    let lines: Vec<String> = std::fs::read_to_string(w.events_file())
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let payloads: Vec<String> = stored
        .iter()
        .map(|m| String::from_utf8(m.payload.clone()).unwrap())
        .collect();
    assert_eq!(payloads, lines);
    for m in &stored {
        assert_eq!(
            m.content_type.as_deref(),
            Some("application/cloudevents+json")
        );
        assert_eq!(m.event()["id"].as_str(), m.msg_id.as_deref());
    }
    assert_eq!(ledger_states(&w), HashMap::from([("delivered".into(), 4)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transition_is_in_the_stream_exactly_once_across_sigkills_while_publishing() {
    const ORDERS: usize = 3000;
    let mut w = World::new().await;
    let Some(server) = NatsServer::start(w.dir.path(), None).await else {
        return;
    };
    let js = server.create_stream().await;
    let publishes = Publishes::watch(&server.client().await).await;
    w.add_sink(bus(&server.url()));
    w.sim.bulk_insert(1, ORDERS, "issued", ago(60));
    // Kill orderwatch while it publishes, until a kill has left publishes
    // acknowledged but not yet marked done (they are published again).
    let mut kills = 0;
    while publishes.total() <= publishes.distinct() && kills < 10 {
        let before = publishes.total();
        let mut daemon = w.spawn();
        let started = eventually(WAIT, || publishes.total() >= before + 200).await;
        daemon.kill();
        kills += 1;
        assert!(started, "nothing published; log:\n{}", daemon.log_text());
        if publishes.distinct() >= ORDERS {
            w.sim
                .bulk_insert(ORDERS as i64 * 10 * kills, 500, "issued", ago(30));
        }
    }
    assert!(
        publishes.total() > publishes.distinct(),
        "{kills} kills never landed between an ack and the ledger"
    );
    w.once();
    let expected = w.stored_events().len();
    assert!(expected >= ORDERS);
    let stored = read_stream(&js).await;
    let ids = msg_ids(&stored);
    let distinct: HashSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), ids.len(), "a duplicate in the stream");
    assert_eq!(ids.len(), expected, "lost or invented events");
    assert_eq!(
        ledger_states(&w),
        HashMap::from([("delivered".into(), expected)])
    );
    eprintln!(
        "{kills} SIGKILLs: {} publishes for {} events, each stored once",
        publishes.total(),
        expected
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_wait_while_the_server_is_down_then_flow_in_order_per_order() {
    const STATUSES: [&str; 4] = ["pending", "needs_approval", "issued", "revoked"];
    let mut w = World::new().await;
    let Some(mut server) = NatsServer::start(w.dir.path(), None).await else {
        return;
    };
    server.create_stream().await;
    w.add_sink(bus(&server.url()));
    let orders = 1..=5i64;
    for o in orders.clone() {
        w.sim.set_status(o, 100 + o, STATUSES[0], ago(60));
    }
    let daemon = w.spawn_ready().await;
    let delivered = |w: &World, n: usize| ledger_states(w).get("delivered") == Some(&n);
    assert!(
        eventually(WAIT, || delivered(&w, 5)).await,
        "{}",
        daemon.log_text()
    );
    server.stop();
    // Each later status is recorded by a poll of its own while the server
    // is down, so every order has three events waiting, in order.
    for (i, status) in STATUSES.iter().enumerate().skip(1) {
        for o in orders.clone() {
            w.sim.set_status(o, 100 + o, status, ago(0));
        }
        let recorded = eventually(WAIT, || w.stored_events().len() == 5 * (i + 1)).await;
        assert!(recorded, "{}", daemon.log_text());
    }
    let failing = |w: &World| {
        w.deliveries(&["--sink", "bus", "--state", "pending"])
            .iter()
            .any(|r| {
                let e = r["last_error"].as_str().unwrap_or_default();
                e.contains("not connected to NATS") || e.contains("cannot connect to NATS")
            })
    };
    assert!(
        eventually(WAIT, || failing(&w)).await,
        "{}",
        daemon.log_text()
    );
    assert_eq!(ledger_states(&w).get("delivered"), Some(&5));

    server.restart().await;
    assert!(
        eventually(WAIT, || delivered(&w, 20)).await,
        "{}",
        daemon.log_text()
    );
    let stored = read_stream(&server.jetstream().await).await;
    let mut per_order: HashMap<i64, Vec<String>> = HashMap::new();
    for m in &stored {
        let e = m.event();
        let order = e["data"]["order_id"].as_i64().unwrap();
        per_order
            .entry(order)
            .or_default()
            .push(e["data"]["status"].as_str().unwrap().to_string());
    }
    for o in orders {
        assert_eq!(per_order[&o], STATUSES, "order {o} out of order");
    }
    assert_eq!(stored.len(), 20);
    assert!(daemon.log_text().contains("lost the connection to NATS"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subject_without_a_stream_is_retried_saying_how_to_create_one() {
    let mut w = World::new().await;
    let Some(server) = NatsServer::start(w.dir.path(), None).await else {
        return;
    };
    w.add_sink(bus(&server.url()));
    for o in 1..=3 {
        w.sim.set_status(o, 100 + o, "issued", ago(60));
    }
    let daemon = w.spawn_ready().await;
    let says_no_stream = |w: &World| {
        let rows = w.deliveries(&["--sink", "bus", "--state", "pending"]);
        rows.len() == 3
            && rows.iter().all(|r| {
                r["last_error"].as_str().is_some_and(|e| {
                    e.contains("no JetStream stream stores subject certcentral.orders.issued")
                        && e.contains("nats stream add ORDERWATCH --subjects 'certcentral.orders.*' --storage file --dupe-window 1h")
                })
            })
    };
    assert!(
        eventually(WAIT, || says_no_stream(&w)).await,
        "{}",
        daemon.log_text()
    );
    assert!(daemon.log_text().contains("503 no responders"));
    // The operator creates the stream: the waiting events go out.
    let js = server.create_stream().await;
    assert!(
        eventually(WAIT, || ledger_states(&w).get("delivered") == Some(&3)).await,
        "{}",
        daemon.log_text()
    );
    assert_eq!(stream_len(&js).await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_are_retried_with_a_clear_message_and_never_logged() {
    const TOKEN: &str = "s3cret-nats-token";
    const WRONG: &str = "wrong-nats-token";
    let mut w = World::new().await;
    let Some(server) = NatsServer::start(w.dir.path(), Some(TOKEN)).await else {
        return;
    };
    let js = server.create_stream().await;
    w.add_sink(bus(&server.url()).with("token_env", "OW_NATS_TOKEN"));
    for o in 1..=3 {
        w.sim.set_status(o, 100 + o, "issued", ago(60));
    }
    let mut daemon = w.spawn_with(&["run"], |c| {
        c.env("OW_NATS_TOKEN", WRONG);
    });
    daemon.wait_until_started().await;
    let refused = |w: &World| {
        let rows = w.deliveries(&["--sink", "bus", "--state", "pending"]);
        rows.len() == 3
            && rows.iter().all(|r| {
                r["last_error"].as_str().is_some_and(|e| {
                    e.contains("refused orderwatch's credentials (token from environment variable OW_NATS_TOKEN)")
                        && e.contains("authorization violation")
                })
            })
    };
    assert!(
        eventually(WAIT, || refused(&w)).await,
        "{}",
        daemon.log_text()
    );
    daemon.terminate(Duration::from_secs(30));
    let log = daemon.log_text();
    let ledger = text(&w.run(&["deliveries", "--json"]).stdout);
    for secret in [TOKEN, WRONG] {
        assert!(!log.contains(secret), "token in the log:\n{log}");
        assert!(!ledger.contains(secret), "token in the ledger:\n{ledger}");
    }
    assert_eq!(stream_len(&js).await, 0);

    // The right token: everything goes out.
    let mut cmd = w.command(&["run", "--once"]);
    cmd.env("OW_NATS_TOKEN", TOKEN);
    let out = output_within(cmd, WAIT);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(stream_len(&js).await, 3);
    assert_eq!(ledger_states(&w), HashMap::from([("delivered".into(), 3)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeliver_to_a_nats_sink_adds_no_duplicate_to_the_stream() {
    let mut w = World::new().await;
    let Some(server) = NatsServer::start(w.dir.path(), None).await else {
        return;
    };
    let js = server.create_stream().await;
    let publishes = Publishes::watch(&server.client().await).await;
    w.add_sink(bus(&server.url()));
    w.sim.bulk_insert(1, 50, "issued", ago(60));
    w.once();
    assert_eq!(stream_len(&js).await, 50);
    assert!(eventually(WAIT, || publishes.total() == 50).await);

    let out = w.run(&["redeliver", "--sink", "bus", "--since", "1h"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("50 deliveries queued"),
        "{}",
        text(&out.stdout)
    );
    w.once();
    // Published again (the subscriber saw each twice), stored once.
    assert!(
        eventually(WAIT, || publishes.total() == 100).await,
        "{} publishes",
        publishes.total()
    );
    assert_eq!(publishes.distinct(), 50);
    let stored = read_stream(&js).await;
    assert_eq!(stored.len(), 50);
    assert_eq!(ledger_states(&w), HashMap::from([("delivered".into(), 50)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_online_finds_the_stream_and_test_sink_publishes_one_marked_event() {
    let mut w = World::new().await;
    let Some(server) = NatsServer::start(w.dir.path(), None).await else {
        return;
    };
    w.add_sink(bus(&server.url()));
    // No stream yet: check --online says what to create, exit 1.
    let out = w.run(&["check", "--online"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("sink bus: no JetStream stream stores subject certcentral.orders.issued"),
        "{err}"
    );
    assert!(err.contains("nats stream add"), "{err}");

    let js = server.create_stream().await;
    let out = w.run(&["check", "--online"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}{stdout}", text(&out.stderr));
    assert!(stdout.contains("sink bus: connected to NATS "), "{stdout}");
    assert!(
        stdout.contains(&format!(
            " at {} (no authentication); stream ORDERS stores certcentral.orders.issued",
            server.url()
        )),
        "{stdout}"
    );
    assert_eq!(stream_len(&js).await, 0, "check --online published");

    let out = w.run(&["test-sink", "bus"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}{stdout}", text(&out.stderr));
    assert!(
        stdout.contains(
            "answer: JetStream stored it on certcentral.orders.test in stream ORDERS as message 1"
        ),
        "{stdout}"
    );
    let stored = read_stream(&js).await;
    assert_eq!(stored.len(), 1);
    let event = stored[0].event();
    assert_eq!(event["type"], "orderwatch.test");
    assert_eq!(event["id"].as_str(), stored[0].msg_id.as_deref());
    assert!(stdout.contains(event["id"].as_str().unwrap()), "{stdout}");
    assert!(!w.store().exists(), "test-sink created the store");
}
