//! NATS: acknowledged publishes per second to a local JetStream with file
//! storage, against issue 13's target of 20,000/s, beside the webhook rate
//! of the same run.
//!
//! `nats-server -js` (Debian's package) runs as a child on a random
//! loopback port with its storage in a temp dir; orderwatch delivers a
//! fresh answer with `run --once` to a NATS sink at its defaults
//! (`max_in_flight = 256`). JetStream counts: the rate runs from the
//! stream's first stored message to its last, and a message is stored
//! just before its ack is sent.
//!
//! Without `nats-server` the row is skipped with a line saying so, unless
//! `ORDERWATCH_REQUIRE_NATS` is set (`.ci/run`), where it counts as missed.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};

use crate::answer::{self, AnswerServer};
use crate::child;
use crate::report::{Report, Row};

/// Issue 13's target.
const TARGET: f64 = 20_000.0;
const STREAM: &str = "ORDERWATCH";

/// `nats-server`, from `$PATH` or where Debian puts it.
fn server_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|d| d.join("nats-server"))
        .find(|p| p.is_file())
}

/// A running `nats-server`, killed on drop.
struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_server(bin: &PathBuf, dir: &std::path::Path) -> Server {
    let port = crate::child::free_port();
    let child = Command::new(bin)
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(dir.join("jetstream"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn nats-server");
    let server = Server { child, port };
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "nats-server did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server
}

/// The stream of the README's `nats stream add` line.
async fn create_stream(js: &jetstream::Context) -> stream::Stream {
    let config = stream::Config {
        name: STREAM.to_string(),
        subjects: vec!["certcentral.orders.*".to_string()],
        storage: stream::StorageType::File,
        duplicate_window: Duration::from_secs(72 * 3600),
        ..Default::default()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match js.create_stream(config.clone()).await {
            Ok(s) => return s,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("cannot create the stream: {e}"),
        }
    }
}

/// One run: `events` new transitions delivered; acked publishes per second.
async fn rate(bin: &PathBuf, events: usize) -> f64 {
    let dir = tempfile::tempdir().expect("tmp");
    let server = start_server(bin, dir.path()).await;
    let url = format!("nats://127.0.0.1:{}", server.port);
    let client = async_nats::connect(&url).await.expect("connect");
    let mut stream = create_stream(&jetstream::new(client)).await;
    let at = chrono::Utc::now() - chrono::TimeDelta::minutes(5);
    let api = AnswerServer::start(answer::build(events, at).await).await;
    let sink = format!("[[sinks]]\nname = \"bus\"\ntype = \"nats\"\nurl = \"{url}\"\n");
    let config = child::write_config(dir.path(), &api.base_url(), "1m", &sink);
    let mut cmd = child::orderwatch(&config, &["run", "--once"]);
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    let mut orderwatch = cmd.spawn().expect("orderwatch");
    let deadline = Instant::now() + Duration::from_secs(300);
    let stored = loop {
        let n = stream.info().await.map(|i| i.state.messages).unwrap_or(0);
        let done = matches!(orderwatch.try_wait(), Ok(Some(_)));
        if n >= events as u64 || done || Instant::now() > deadline {
            break n;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let _ = orderwatch.kill();
    let _ = orderwatch.wait();
    assert_eq!(stored, events as u64, "every event reached the stream");
    let state = stream.info().await.expect("stream info").state.clone();
    let span =
        state.last_timestamp.unix_timestamp_nanos() - state.first_timestamp.unix_timestamp_nanos();
    (events - 1) as f64 / (span as f64 / 1e9)
}

/// The row; `webhook` is the signed webhook rate of this run, if measured.
pub async fn rows(runs: usize, events: usize, webhook: Option<f64>, report: &mut Report) {
    let name = "nats: acknowledged publishes/s, 256 in flight, file storage";
    let Some(bin) = server_binary() else {
        if std::env::var_os("ORDERWATCH_REQUIRE_NATS").is_some() {
            // A NaN ratio with a bound counts as missed.
            report.push(
                Row::new(name, "nats-server missing".into(), "20000/s".into())
                    .at_least(f64::NAN, 1.0),
            );
        } else {
            eprintln!(
                "skipped: the nats row: nats-server is not installed (apt-get install nats-server)"
            );
        }
        return;
    };
    let mut best = 0.0f64;
    for _ in 0..runs {
        best = best.max(rate(&bin, events).await);
    }
    let reference = match webhook {
        Some(w) => format!("target {TARGET:.0}/s (webhook {w:.0}/s)"),
        None => format!("target {TARGET:.0}/s"),
    };
    report.push(Row::new(name, format!("{best:.0}/s"), reference).at_least(best / TARGET, 1.0));
}
