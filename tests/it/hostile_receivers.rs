//! Webhook receivers that misbehave at the TCP and HTTP level: an endless
//! answer body, headers and then silence, a connection closed in the middle
//! of the request, redirects. Each failure is bounded (at most a few KiB of
//! any answer is read, every attempt ends within the sink's timeout), logged
//! with its cause, kept in the ledger, and retried per the sink's policy;
//! once the receiver behaves, every event arrives. Nothing is ever sent to a
//! redirect's target.
//!
//! A receiver that accepts the connection and never answers is covered in
//! `webhook_failures.rs` (`a_hanging_receiver_times_out_and_polling_and_other_sinks_carry_on`).

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::receiver::Reply;
use crate::support::{Daemon, World, ago, eventually};

/// How the raw receiver treats the next connections.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Behaviour {
    /// Read the whole request, answer 200.
    Accept,
    /// Answer this status with a chunked body that never ends.
    Endless(u16),
    /// Send a status line and headers promising a body, then nothing,
    /// keeping the connection open until the client gives up.
    HeadersThenSilence(u16),
    /// Read a few bytes of the request, then close (a reset: unread data
    /// is left in the socket).
    CloseMidRequest,
    /// Answer 302 with this `Location`.
    Redirect(String),
}

/// A webhook receiver written against raw TCP, so it can break HTTP.
#[derive(Clone)]
struct RawReceiver {
    url: String,
    behaviour: Arc<Mutex<Behaviour>>,
    /// Connections accepted so far.
    connections: Arc<AtomicUsize>,
    /// `webhook-id`s of requests answered 200.
    accepted: Arc<Mutex<Vec<String>>>,
    /// The most body bytes one endless answer got out before the client
    /// hung up.
    most_sent: Arc<AtomicU64>,
}

impl RawReceiver {
    fn start(host: &str, behaviour: Behaviour) -> RawReceiver {
        // Where 127.0.0.2 cannot be bound, another port is still another origin.
        let listener = TcpListener::bind((host, 0))
            .or_else(|_| TcpListener::bind(("127.0.0.1", 0)))
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let r = RawReceiver {
            url: format!("http://{addr}/hook"),
            behaviour: Arc::new(Mutex::new(behaviour)),
            connections: Arc::new(AtomicUsize::new(0)),
            accepted: Arc::new(Mutex::new(Vec::new())),
            most_sent: Arc::new(AtomicU64::new(0)),
        };
        let serving = r.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                serving.connections.fetch_add(1, Ordering::SeqCst);
                let r = serving.clone();
                std::thread::spawn(move || r.serve(conn));
            }
        });
        r
    }

    fn set(&self, b: Behaviour) {
        *self.behaviour.lock().unwrap() = b;
    }

    fn accepted(&self) -> Vec<String> {
        self.accepted.lock().unwrap().clone()
    }

    fn serve(&self, mut conn: TcpStream) {
        let behaviour = self.behaviour.lock().unwrap().clone();
        if behaviour == Behaviour::CloseMidRequest {
            let mut some = [0u8; 16];
            let _ = conn.read(&mut some);
            return;
        }
        let Some((head, _body)) = read_request(&mut conn) else {
            return;
        };
        match behaviour {
            Behaviour::Accept => {
                let id = header(&head, "webhook-id").unwrap_or_default();
                self.accepted.lock().unwrap().push(id);
                let _ = conn.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                );
            }
            Behaviour::Endless(status) => {
                let head = format!(
                    "HTTP/1.1 {status} Whatever\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
                );
                if conn.write_all(head.as_bytes()).is_err() {
                    return;
                }
                let chunk = "x".repeat(16 * 1024);
                let framed = format!("{:x}\r\n{chunk}\r\n", chunk.len());
                let mut sent = 0u64;
                while conn.write_all(framed.as_bytes()).is_ok() {
                    sent += framed.len() as u64;
                }
                self.most_sent.fetch_max(sent, Ordering::SeqCst);
            }
            Behaviour::HeadersThenSilence(status) => {
                let head = format!("HTTP/1.1 {status} Whatever\r\nContent-Length: 1000\r\n\r\n");
                if conn.write_all(head.as_bytes()).is_err() {
                    return;
                }
                // Hold the connection until the client closes it.
                let mut buf = [0u8; 64];
                while matches!(conn.read(&mut buf), Ok(n) if n > 0) {}
            }
            Behaviour::Redirect(location) => {
                let head = format!(
                    "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = conn.write_all(head.as_bytes());
            }
            Behaviour::CloseMidRequest => {}
        }
    }
}

/// Reads a request head and its `Content-Length` body.
fn read_request(conn: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&data[..end]).into_owned();
    let length: usize = header(&head, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = data[end..].to_vec();
    while body.len() < length {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => body.extend_from_slice(&buf[..n]),
        }
    }
    Some((head, body))
}

fn header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// A world with three transitions and a webhook sink `hook` posting to `url`.
async fn world(url: &str, timeout: &str) -> World {
    let mut w = World::new().await;
    w.add_sink(
        w.hook("hook", url)
            .with("timeout", timeout)
            .with("concurrency", 2),
    );
    w.sim.set_status(1, 11, "pending", ago(30));
    w.sim.set_status(2, 12, "issued", ago(20));
    w.sim.set_status(3, 13, "pending", ago(10));
    w
}

const EVENTS: [&str; 3] = ["1:pending", "2:issued", "3:pending"];

fn all_events() -> BTreeSet<String> {
    EVENTS.iter().map(|s| s.to_string()).collect()
}

/// Waits for `n` connections to the receiver.
async fn attempts(r: &RawReceiver, n: usize, daemon: &Daemon) {
    let arrived = eventually(Duration::from_secs(30), || {
        r.connections.load(Ordering::SeqCst) >= n
    })
    .await;
    assert!(
        arrived,
        "only {} attempts arrived:\n{}",
        r.connections.load(Ordering::SeqCst),
        daemon.log_text()
    );
}

/// The ledger rows of `hook`, each still pending with an error recorded.
fn pending_errors(w: &World) -> Vec<String> {
    let rows = w.deliveries(&["--sink", "hook"]);
    assert!(!rows.is_empty());
    rows.iter()
        .filter(|r| r["state"] == "pending" && r["attempts"].as_u64() > Some(0))
        .map(|r| r["last_error"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Switches the receiver to accepting and waits for every event.
async fn recovers(r: &RawReceiver, w: &World, daemon: &mut Daemon) {
    r.set(Behaviour::Accept);
    let all = eventually(Duration::from_secs(30), || {
        r.accepted().iter().cloned().collect::<BTreeSet<_>>() == all_events()
    })
    .await;
    assert!(all, "got {:?}:\n{}", r.accepted(), daemon.log_text());
    assert!(daemon.terminate(Duration::from_secs(20)).success());
    let rows = w.deliveries(&["--sink", "hook"]);
    assert_eq!(rows.len(), EVENTS.len());
    assert!(rows.iter().all(|r| r["state"] == "delivered"), "{rows:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_503_body_is_read_only_a_few_kib_and_the_delivery_retries_promptly() {
    let r = RawReceiver::start("127.0.0.1", Behaviour::Endless(503));
    // A long timeout: a sender reading the whole body would sit out every
    // attempt to the end of it, and the next attempts would not come.
    let w = world(&r.url, "60s").await;
    let mut daemon = w.spawn_ready().await;
    attempts(&r, 4, &daemon).await;
    let errors = pending_errors(&w);
    assert!(!errors.is_empty());
    for e in &errors {
        assert!(e.starts_with("HTTP 503"), "{e}");
        assert!(e.len() <= 4096, "{} bytes of error kept", e.len());
    }
    let log = daemon.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("delivery failed; will retry") && l.contains("HTTP 503")),
        "{log}"
    );
    assert!(log.lines().all(|l| l.len() < 8192), "a huge log line");
    let sent = r.most_sent.load(Ordering::SeqCst);
    assert!(sent < 32 << 20, "one answer got {sent} bytes out");

    // An endless body with 200 is a delivery: the rest is never read.
    r.set(Behaviour::Endless(200));
    let before = r.connections.load(Ordering::SeqCst);
    attempts(&r, before + EVENTS.len(), &daemon).await;
    let delivered = eventually(Duration::from_secs(30), || {
        w.deliveries(&["--sink", "hook", "--state", "delivered"])
            .len()
            == EVENTS.len()
    })
    .await;
    assert!(delivered, "{}", daemon.log_text());
    assert!(daemon.terminate(Duration::from_secs(20)).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_followed_by_silence_end_at_the_timeout_and_are_retried() {
    let r = RawReceiver::start("127.0.0.1", Behaviour::HeadersThenSilence(503));
    let w = world(&r.url, "1s").await;
    let mut daemon = w.spawn_ready().await;
    attempts(&r, 3, &daemon).await;
    // Each attempt ended (the next one came); the ledger says why.
    let errors = pending_errors(&w);
    assert!(
        errors.iter().all(|e| e.starts_with("HTTP 503")),
        "{errors:?}"
    );
    recovers(&r, &w, &mut daemon).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_closed_mid_request_is_a_network_error_and_is_retried() {
    let r = RawReceiver::start("127.0.0.1", Behaviour::CloseMidRequest);
    let w = world(&r.url, "5s").await;
    let mut daemon = w.spawn_ready().await;
    attempts(&r, 3, &daemon).await;
    let errors = pending_errors(&w);
    assert!(!errors.is_empty());
    for e in &errors {
        assert!(e.starts_with(&format!("POST {} failed", r.url)), "{e}");
    }
    let log = daemon.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("delivery failed; will retry") && l.contains("failed:")),
        "{log}"
    );
    recovers(&r, &w, &mut daemon).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_is_retried_never_followed_and_its_target_gets_nothing() {
    // The target is another host (127.0.0.2) where it can be bound.
    let target = RawReceiver::start("127.0.0.2", Behaviour::Accept);
    let r = RawReceiver::start("127.0.0.1", Behaviour::Redirect(target.url.clone()));
    let w = world(&r.url, "5s").await;
    let mut daemon = w.spawn_ready().await;
    attempts(&r, 3, &daemon).await;
    let errors = pending_errors(&w);
    assert!(!errors.is_empty());
    for e in &errors {
        assert_eq!(
            e,
            &format!(
                "HTTP 302 Found: redirect to {} not followed; fix the sink's url",
                target.url
            )
        );
    }
    recovers(&r, &w, &mut daemon).await;
    assert_eq!(
        target.connections.load(Ordering::SeqCst),
        0,
        "the redirect was followed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absurd_retry_after_neither_crashes_the_sink_nor_holds_it_past_give_up_after() {
    let (mut w, rx) = World::with_webhook().await;
    rx.script([Reply::RetryAfter(429, u64::MAX.to_string())]);
    w.set("sinks.hook.give_up_after", "2s")
        .set("sinks.hook.concurrency", 1);
    w.sim.set_status(1, 11, "pending", ago(30));
    let mut daemon = w.spawn_ready().await;
    let settled = eventually(Duration::from_secs(30), || {
        w.deliveries(&["--sink", "hook"])
            .iter()
            .any(|r| r["state"] != "pending")
    })
    .await;
    let log = daemon.log_text();
    assert!(!log.contains("panicked"), "{log}");
    assert!(settled, "{log}");
    let rows = w.deliveries(&["--sink", "hook"]);
    assert_eq!(rows[0]["state"], "delivered", "{rows:#?}");
    assert_eq!(rows[0]["attempts"], 2, "{rows:#?}");
    assert_eq!(rx.accepted().len(), 1);
    assert!(
        daemon.wait_timeout(Duration::ZERO).is_none(),
        "the daemon stopped:\n{log}"
    );
    assert!(daemon.terminate(Duration::from_secs(20)).success());
}
