//! CertCentral answering what it should not, fed to the real daemon: ids of
//! the wrong type or range, missing or empty statuses, the wrong shape, an
//! error object with HTTP 200, an empty body, an HTML page, an answer over
//! `max_response_size` (declared or endless), a body dripping one byte a
//! second, a redirect to another host, a plain-http base URL.
//!
//! Every rejected answer fails its cycle with a log line naming the cause
//! (down to the element and field), records nothing and leaves the cursor
//! where it was; the daemon keeps polling and records the next good answer.
//! Oddities that are valid data (unknown statuses, extra fields, the same
//! order twice) are recorded as they come.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::{Daemon, World, ago, eventually, ids, text};
use orderwatch::simulator::Fault;
use orderwatch::store::sqlite::Db;

/// `[digicert]` for these tests: no retries within a cycle (one fault, one
/// failed cycle), a short timeout, and a small answer cap.
const DIGICERT: &str = "retries = 0\nretry_initial = \"100ms\"\nretry_max = \"300ms\"\ntimeout = \"3s\"\nmax_requests_per_minute = 180\nmax_response_size = \"4KiB\"\n";

/// Fast cycles, so a long list of faults goes by in seconds.
const POLL: &str = "interval = \"250ms\"\noverlap = \"10m\"\ninitial_lookback = \"1h\"\n";

/// A world whose first cycle has committed `1:pending` (so there is a
/// cursor to keep) and whose account has two transitions waiting.
async fn primed() -> World {
    let mut w = World::new().await;
    w.file_sink();
    w.set_digicert_extra(DIGICERT);
    w.set_poll(POLL);
    w.sim.set_status(1, 11, "pending", ago(120));
    w.once();
    assert_eq!(ids(&w.file_events()), vec!["1:pending"]);
    w.sim.set_status(1, 11, "issued", ago(2));
    w.sim.set_status(2, 12, "pending", ago(1));
    w
}

fn cursor(w: &World) -> Option<DateTime<Utc>> {
    Db::open(&w.store())
        .expect("open the store")
        .cursor()
        .expect("read the cursor")
}

/// `events --json`, oldest first.
fn stored_ids(w: &World) -> Vec<String> {
    let mut v = ids(&w.stored_events());
    v.reverse();
    v
}

fn json(status: u16, body: &str) -> Fault {
    Fault::Respond {
        status,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: body.to_string(),
    }
}

/// An answer that must be refused, and what the log must say about it.
struct Rejected {
    fault: Fault,
    code: &'static str,
    cause: String,
}

fn rejected(fault: Fault, code: &'static str, cause: &str) -> Rejected {
    Rejected {
        fault,
        code,
        cause: cause.to_string(),
    }
}

fn order(id: &str, cert: &str, status: &str) -> String {
    format!(r#"{{"order_id":{id},"certificate_id":{cert},"status":{status}}}"#)
}

fn orders(list: &[String]) -> String {
    format!(r#"{{"orders":[{}]}}"#, list.join(","))
}

/// Every answer shape that must fail its cycle.
fn rejected_answers() -> Vec<Rejected> {
    let good = order("5", "50", r#""pending""#);
    let one = |o: String| json(200, &orders(&[o]));
    // A valid element before the bad one: nothing of the answer is kept.
    let after_good = |o: String| json(200, &orders(&[good.clone(), o]));
    vec![
        rejected(
            one(order(r#""7""#, "70", r#""pending""#)),
            "malformed",
            r#"orders[0].order_id: expected a positive integer, got the string "7""#,
        ),
        rejected(
            after_good(order("-7", "70", r#""pending""#)),
            "malformed",
            "orders[1].order_id: expected a positive integer, got -7",
        ),
        rejected(
            one(order("0", "70", r#""pending""#)),
            "malformed",
            "orders[0].order_id: expected a positive integer, got 0",
        ),
        rejected(
            one(order("9223372036854775808", "70", r#""pending""#)),
            "malformed",
            "orders[0].order_id: expected a positive integer, got the number 9223372036854775808",
        ),
        rejected(
            one(order("7.5", "70", r#""pending""#)),
            "malformed",
            "orders[0].order_id: expected a positive integer, got the number 7.5",
        ),
        rejected(
            one(order("null", "70", r#""pending""#)),
            "malformed",
            "orders[0].order_id: expected a positive integer, got null",
        ),
        rejected(
            after_good(r#"{"certificate_id":70,"status":"pending"}"#.to_string()),
            "malformed",
            "orders[1].order_id is missing",
        ),
        rejected(
            one(order("7", r#""70""#, r#""pending""#)),
            "malformed",
            r#"orders[0] (order 7).certificate_id: expected a positive integer, got the string "70""#,
        ),
        rejected(
            one(order("7", "-70", r#""pending""#)),
            "malformed",
            "orders[0] (order 7).certificate_id: expected a positive integer, got -70",
        ),
        rejected(
            one(order("7", "18446744073709551616", r#""pending""#)),
            "malformed",
            "orders[0] (order 7).certificate_id: expected a positive integer, got the number 1.844674407370955",
        ),
        rejected(
            after_good(r#"{"order_id":7,"certificate_id":70}"#.to_string()),
            "malformed",
            "orders[1] (order 7).status is missing",
        ),
        rejected(
            one(order("7", "70", r#""""#)),
            "malformed",
            r#"orders[0] (order 7).status: expected a non-empty string, got the string """#,
        ),
        rejected(
            one(order("7", "70", r#""   ""#)),
            "malformed",
            r#"orders[0] (order 7).status: expected a non-empty string, got the string "   ""#,
        ),
        rejected(
            one(order("7", "70", "null")),
            "malformed",
            "orders[0] (order 7).status: expected a non-empty string, got null",
        ),
        rejected(
            one(order("7", "70", r#"["issued"]"#)),
            "malformed",
            "orders[0] (order 7).status: expected a non-empty string, got an array",
        ),
        rejected(
            json(200, r#"{"orders":null}"#),
            "malformed",
            r#"invalid type: null, expected "orders" to be a list of orders"#,
        ),
        rejected(
            json(200, r#"{"orders":{"order_id":7,"status":"pending"}}"#),
            "malformed",
            r#"invalid type: map, expected "orders" to be a list of orders"#,
        ),
        rejected(
            json(200, "[]"),
            "malformed",
            "invalid type: sequence, expected a JSON object",
        ),
        rejected(json(200, ""), "malformed", "empty body"),
        rejected(
            json(200, r#"{"orders":[{"order_id":7,"status":"pend"#),
            "malformed",
            "EOF while parsing",
        ),
        rejected(
            json(200, r#"{"orders":[]} {"orders":[]}"#),
            "malformed",
            "trailing characters",
        ),
        rejected(
            after_good(r#"[7,70,"pending"]"#.to_string()),
            "malformed",
            "invalid type: sequence, expected orders[1] to be an order object",
        ),
        rejected(
            one(r#"{"order_id":7,"order_id":8,"status":"pending"}"#.to_string()),
            "malformed",
            "duplicate field `order_id`",
        ),
        rejected(Fault::html(200), "malformed", "expected value at line 1"),
        rejected(
            json(
                200,
                r#"{"errors":[{"code":"access_denied","message":"Simulated: not allowed."}]}"#,
            ),
            "access_denied",
            "answered HTTP 200: access_denied: Simulated: not allowed.",
        ),
        rejected(
            json(200, &orders(&vec![good.clone(); 100])),
            "too_large",
            "is larger than max_response_size (4096 bytes)",
        ),
        // The real answer, one byte a second: the 3 s timeout covers the body.
        rejected(
            Fault::SlowBody(Duration::from_secs(1)),
            "timeout",
            "no complete answer from",
        ),
    ]
}

/// The lines of failed cycles, in order.
fn failed_cycles(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("poll cycle failed"))
        .map(str::to_string)
        .collect()
}

fn still_running(d: &mut Daemon) -> bool {
    d.wait_timeout(Duration::ZERO).is_none()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_malformed_answer_fails_its_cycle_naming_the_cause_and_the_daemon_recovers() {
    let w = primed().await;
    let before = cursor(&w);
    assert!(before.is_some());
    let asked = w.sim.queries().len();
    let rows = rejected_answers();
    for r in &rows {
        w.sim.push_fault(r.fault.clone());
    }
    // Then a request that hangs: while it is outstanding no cycle can
    // commit, so the store shows exactly what the rejected answers left.
    // (The daemon is stopped meanwhile, so its timeout cannot end the
    // hang while the store is being looked at, however slow the machine.)
    w.sim.push_fault(Fault::Hang(Duration::from_secs(30)));
    let mut daemon = w.spawn();

    let hung = eventually(Duration::from_secs(60), || {
        w.sim.queries().len() > asked + rows.len()
    })
    .await;
    let log = daemon.log_text();
    assert!(
        hung,
        "the daemon stopped asking after {} requests:\n{log}",
        w.sim.queries().len() - asked
    );
    daemon.signal("STOP");
    assert!(still_running(&mut daemon), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    let failed = failed_cycles(&log);
    assert_eq!(failed.len(), rows.len(), "{log}");
    for (line, r) in failed.iter().zip(&rows) {
        assert!(
            line.contains(&format!("code={}", r.code)) && line.contains(&r.cause),
            "expected code={} and {:?} in:\n{line}",
            r.code,
            r.cause
        );
    }
    assert_eq!(cursor(&w), before, "a rejected answer moved the cursor");
    assert_eq!(stored_ids(&w), vec!["1:pending"], "{log}");
    assert_eq!(ids(&w.file_events()), vec!["1:pending"]);
    daemon.signal("CONT");

    // The hang times out too, and the next good answer is recorded.
    let expected = vec!["1:pending", "1:issued", "2:pending"];
    let recovered = eventually(Duration::from_secs(30), || {
        ids(&w.file_events()) == expected
    })
    .await;
    let log = daemon.log_text();
    assert!(recovered, "no recovery after the faults:\n{log}");
    assert!(
        failed_cycles(&log)[rows.len()].contains("code=timeout"),
        "{log}"
    );
    assert!(cursor(&w) > before);
    assert!(daemon.terminate(Duration::from_secs(20)).success());
    assert_eq!(stored_ids(&w), expected);
    assert_eq!(ids(&w.file_events()), expected, "delivered once each");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_statuses_extra_fields_and_an_order_twice_are_recorded_as_they_come() {
    let w = primed().await;
    let answer = r#"{"orders":[
        {"order_id":7,"certificate_id":70,"status":"pending","product":{"name_id":"ssl_plus","tags":[1,{"x":null}]},"organization":{"id":3}},
        {"order_id":7,"certificate_id":70,"status":"awaiting_quantum_validation"},
        {"order_id":8,"status":"needs_approval","deep":DEEP},
        {"order_id":9,"certificate_id":null,"status":" Reissue_Pending "}
      ],"page":null,"next_release":"soon","meta":[1,2,3]}"#;
    // Deep nesting in a field nobody reads is skipped, not recursed into.
    let deep = format!("{}0{}", "[".repeat(1000), "]".repeat(1000));
    w.sim.push_fault(json(200, &answer.replace("DEEP", &deep)));
    // An empty object means nothing changed: a good answer too.
    w.sim.push_fault(json(200, "{}"));
    let mut daemon = w.spawn();
    let expected = vec![
        "1:pending",
        "7:pending",
        "7:awaiting_quantum_validation",
        "8:needs_approval",
        "9:reissue_pending",
        "1:issued",
        "2:pending",
    ];
    let done = eventually(Duration::from_secs(30), || {
        ids(&w.file_events()).len() >= expected.len()
    })
    .await;
    let log = daemon.log_text();
    assert!(done, "{log}");
    assert!(!log.contains("poll cycle failed"), "{log}");
    assert!(daemon.terminate(Duration::from_secs(20)).success());

    let events = w.file_events();
    assert_eq!(ids(&events), expected);
    let data =
        |id: &str| events[ids(&events).iter().position(|e| e == id).unwrap()]["data"].clone();
    assert_eq!(data("7:pending")["certificate_id"], 70);
    assert_eq!(
        data("7:pending")["previous_status"],
        serde_json::Value::Null
    );
    // The same order twice in one answer: both statuses, in answer order.
    assert_eq!(
        data("7:awaiting_quantum_validation")["previous_status"],
        "pending"
    );
    assert_eq!(
        data("7:awaiting_quantum_validation")["status"],
        "awaiting_quantum_validation"
    );
    // No certificate yet (missing or null): recorded without one.
    assert_eq!(
        data("8:needs_approval")["certificate_id"],
        serde_json::Value::Null
    );
    assert_eq!(
        data("9:reissue_pending")["certificate_id"],
        serde_json::Value::Null
    );
    assert_eq!(stored_ids(&w), expected);
}

/// A base URL answering every request with an endless chunked body of
/// orders, counting the bytes it managed to send.
struct EndlessApi {
    base_url: String,
    sent: Arc<AtomicU64>,
    requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl EndlessApi {
    fn start() -> EndlessApi {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let base_url = format!(
            "http://{}/services/v2",
            listener.local_addr().expect("address")
        );
        let api = EndlessApi {
            base_url,
            sent: Arc::new(AtomicU64::new(0)),
            requests: Arc::new(AtomicUsize::new(0)),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let (sent, requests, stop) = (
            Arc::clone(&api.sent),
            Arc::clone(&api.requests),
            Arc::clone(&api.stop),
        );
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                requests.fetch_add(1, Ordering::SeqCst);
                let sent = Arc::clone(&sent);
                std::thread::spawn(move || stream_forever(conn, &sent));
            }
        });
        api
    }
}

impl Drop for EndlessApi {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees `stop`.
        let _ = TcpStream::connect(
            self.base_url
                .trim_start_matches("http://")
                .split('/')
                .next()
                .unwrap_or_default(),
        );
    }
}

/// Reads the request head, then writes orders until the client hangs up.
fn stream_forever(mut conn: TcpStream, sent: &AtomicU64) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let start =
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    if conn.write_all(start).is_err() {
        return;
    }
    let mut chunk = String::from("{\"orders\":[");
    let mut id = 1u64;
    loop {
        while chunk.len() < 16 * 1024 {
            chunk.push_str(&format!(
                "{{\"order_id\":{id},\"certificate_id\":{id},\"status\":\"pending\"}},"
            ));
            id += 1;
        }
        let framed = format!("{:x}\r\n{chunk}\r\n", chunk.len());
        if conn.write_all(framed.as_bytes()).is_err() {
            let _ = conn.shutdown(Shutdown::Both);
            return;
        }
        sent.fetch_add(framed.len() as u64, Ordering::SeqCst);
        chunk.clear();
    }
}

/// Resident memory of a process, in KiB (Linux).
fn rss_kib(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_answer_is_cut_off_at_max_response_size_without_growing_memory() {
    let mut w = World::new().await;
    w.file_sink();
    w.set_digicert_extra(&DIGICERT.replace("4KiB", "64KiB"));
    w.set_poll(POLL);
    let api = EndlessApi::start();
    let config = std::fs::read_to_string(&w.config).expect("config");
    std::fs::write(&w.config, config.replace(&w.sim.base_url(), &api.base_url)).expect("config");

    let mut daemon = w.spawn();
    let cycles = eventually(Duration::from_secs(30), || {
        failed_cycles(&daemon.log_text())
            .iter()
            .filter(|l| l.contains("code=too_large"))
            .count()
            >= 3
    })
    .await;
    let log = daemon.log_text();
    assert!(cycles, "no three too_large cycles:\n{log}");
    assert!(
        log.contains("is larger than max_response_size (65536 bytes)"),
        "{log}"
    );
    assert!(still_running(&mut daemon), "{log}");
    let rss = rss_kib(daemon.pid()).unwrap_or(0);
    assert!(rss < 256 * 1024, "the daemon holds {rss} KiB");
    // Each request stopped reading soon after the cap: what was sent fits
    // in the socket buffers, not in an unbounded answer.
    let requests = api.requests.load(Ordering::SeqCst) as u64;
    let sent = api.sent.load(Ordering::SeqCst);
    assert!(requests >= 3);
    assert!(
        sent / requests < 32 << 20,
        "{sent} bytes sent over {requests} requests"
    );
    assert!(daemon.terminate(Duration::from_secs(20)).success());
    assert!(w.stored_events().is_empty());
    assert!(w.file_events().is_empty());
    assert!(Db::open(&w.store()).unwrap().cursor().unwrap().is_none());
}

/// A listener on another loopback address that records every request head
/// it receives (and answers 200 `{}` so a client that followed would succeed).
struct Elsewhere {
    url: String,
    heads: Arc<Mutex<Vec<String>>>,
}

fn elsewhere() -> Elsewhere {
    // 127.0.0.2 is another host as far as any HTTP client is concerned;
    // where it cannot be bound, another port still makes another origin.
    let listener = TcpListener::bind("127.0.0.2:0")
        .or_else(|_| TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&heads);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            seen.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&head).into_owned());
            let _ = conn.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
            );
        }
    });
    Elsewhere {
        url: format!("http://{addr}/services/v2/order/certificate/status-changes?minutes=60"),
        heads,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_is_not_followed_so_the_api_key_never_reaches_another_host() {
    let w = primed().await;
    let before = cursor(&w);
    let other = elsewhere();
    let asked = w.sim.queries().len();
    for status in [302, 307, 301, 308] {
        w.sim.push_fault(Fault::Respond {
            status,
            headers: vec![("Location".into(), other.url.clone())],
            body: String::new(),
        });
    }
    let mut daemon = w.spawn();
    let recovered = eventually(Duration::from_secs(30), || w.file_events().len() >= 3).await;
    let log = daemon.log_text();
    assert!(recovered, "{log}");
    assert!(daemon.terminate(Duration::from_secs(20)).success());

    let failed = failed_cycles(&log);
    assert_eq!(failed.len(), 4, "{log}");
    for line in &failed {
        assert!(line.contains("code=redirect"), "{line}");
        assert!(
            line.contains(&format!("a redirect to {}", other.url)),
            "{line}"
        );
        assert!(line.contains("redirects are not followed"), "{line}");
    }
    assert!(!log.contains(common::KEY), "the key was logged:\n{log}");
    let heads = other.heads.lock().unwrap().clone();
    assert!(heads.is_empty(), "the redirect was followed: {heads:?}");
    // Every request went to the configured API, with the key.
    let queries = w.sim.queries()[asked..].to_vec();
    assert!(
        queries[..4]
            .iter()
            .all(|q| q.status >= 300 && q.status < 400)
    );
    assert!(
        queries
            .iter()
            .all(|q| q.api_key_sent.as_deref() == Some(common::KEY))
    );
    assert!(cursor(&w) > before);
    assert_eq!(stored_ids(&w), vec!["1:pending", "1:issued", "2:pending"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_refuses_plain_http_to_a_remote_host_unless_allowed() {
    let mut w = World::new().await;
    let good = std::fs::read_to_string(&w.config).expect("config");
    let remote = "http://api.example.net/services/v2";
    std::fs::write(&w.config, good.replace(&w.sim.base_url(), remote)).expect("config");
    let out = w.run(&["check"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("digicert.base_url"), "{err}");
    assert!(err.contains(remote), "{err}");
    assert!(err.contains("in clear"), "{err}");
    assert!(err.contains("allow_insecure_http = true"), "{err}");
    // `run` refuses the same config before sending anything.
    let out = w.run(&["run", "--once"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(w.sim.queries().is_empty());

    // Explicitly allowed, the config is accepted (check sends nothing).
    w.set_digicert_extra("allow_insecure_http = true\n");
    let allowed = std::fs::read_to_string(&w.config).expect("config");
    std::fs::write(&w.config, allowed.replace(&w.sim.base_url(), remote)).expect("config");
    let out = w.run(&["check"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(remote));
    // Loopback needs no opt-in (the simulator), https never does.
    w.set_digicert_extra("");
    let out = w.run(&["check"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_ca_store_plain_http_to_loopback_works_and_the_log_says_what_is_missing() {
    let mut w = World::new().await;
    let receiver = common::receiver::Receiver::start().await;
    w.file_sink();
    w.sink_toml(&format!(
        "[[sinks]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \"{}\"\nsecret_env = \"OW_TEST_SECRET\"\n",
        receiver.url()
    ));
    w.sim.set_status(5, 55, "issued", ago(30));
    // A host without /etc/ssl/certs: the variables replace the usual places.
    let mut c = w.command(&["run", "--once"]);
    c.env("SSL_CERT_FILE", w.path("no-such-ca.pem"))
        .env("SSL_CERT_DIR", w.path("no-such-dir"))
        .env("OW_TEST_SECRET", common::receiver::SECRET);
    let out = common::output_within(c, Duration::from_secs(60));
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(ids(&w.file_events()), ["5:issued"]);
    assert_eq!(receiver.accepted().len(), 1, "{stderr}");
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("no CA certificates"))
        .collect();
    assert_eq!(warnings.len(), 1, "one warning for both clients:\n{stderr}");
    assert!(warnings[0].contains(" WARN "), "{}", warnings[0]);
    assert!(warnings[0].contains("no-such-ca.pem"), "{}", warnings[0]);
    assert!(
        warnings[0].contains("apt install ca-certificates"),
        "{}",
        warnings[0]
    );
    assert!(warnings[0].contains("SSL_CERT_FILE"), "{}", warnings[0]);
}
