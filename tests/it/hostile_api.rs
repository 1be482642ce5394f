//! CertCentral misbehaving below the JSON: an answer that never ends (cut
//! off at `max_response_size` while memory stays flat), a redirect to
//! another host (never followed, so the API key stays home), and a plain
//! `http://` base URL to a remote host (refused without an explicit opt-in).
//!
//! Each failure fails its cycle with a log line naming the cause, records
//! nothing, and the daemon keeps polling.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::hostile_answers::{hostile_world, primed};
use crate::support::sim::Fault;
use crate::support::{KEY, World, ago, eventually, failed_cycles, output_within, text};

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
    let mut w = hostile_world("64KiB").await;
    let api = EndlessApi::start();
    w.set("digicert.base_url", api.base_url.clone());

    let mut daemon = w.spawn_ready().await;
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
    assert!(daemon.is_running(), "{log}");
    let rss = rss_kib(daemon.pid()).expect("the daemon's VmRSS in /proc");
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
    assert!(w.cursor().is_none());
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
    let before = w.cursor();
    let other = elsewhere();
    let asked = w.sim.queries().len();
    for status in [302, 307, 301, 308] {
        w.sim.push_fault(Fault::Respond {
            status,
            headers: vec![("Location".into(), other.url.clone())],
            body: String::new(),
        });
    }
    let mut daemon = w.spawn_ready().await;
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
    assert!(!log.contains(KEY), "the key was logged:\n{log}");
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
            .all(|q| q.api_key_sent.as_deref() == Some(KEY))
    );
    assert!(w.cursor() > before);
    assert_eq!(w.recorded_ids(), vec!["1:pending", "1:issued", "2:pending"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_refuses_plain_http_to_a_remote_host_unless_allowed() {
    let mut w = World::new().await;
    let remote = "http://api.example.net/services/v2";
    w.set("digicert.base_url", remote);
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
    w.set("digicert.allow_insecure_http", true);
    let out = w.run(&["check"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(remote));
    // Loopback needs no opt-in (the simulator), https never does.
    let simulator = w.sim.base_url();
    w.unset("digicert.allow_insecure_http")
        .set("digicert.base_url", simulator);
    let out = w.run(&["check"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_ca_store_plain_http_to_loopback_works_and_the_log_says_what_is_missing() {
    let (mut w, receiver) = World::with_webhook().await;
    w.file_sink();
    w.sim.set_status(5, 55, "issued", ago(30));
    // A host without /etc/ssl/certs: the variables replace the usual places.
    let mut c = w.command(&["run", "--once"]);
    c.env("SSL_CERT_FILE", w.path("no-such-ca.pem"))
        .env("SSL_CERT_DIR", w.path("no-such-dir"));
    let out = output_within(c, Duration::from_secs(60));
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(w.file_ids(), ["5:issued"]);
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
