//! A real NATS server for the NATS sink's tests (`nats.rs`): Debian's
//! `nats-server` with JetStream and file storage, on a random loopback
//! port, stopped and restarted on the same port and storage directory,
//! killed on drop. And what a consumer sees: the stream read back with a
//! pull consumer, and every publish (duplicates included) counted by a
//! plain subscriber.
//!
//! Without the binary a test [`skip`]s visibly, and fails instead under
//! `ORDERWATCH_REQUIRE_NATS` (set by `.ci/run`, which installs it).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;

use super::{free_port, skip};

/// The stream the tests create: every subject under `certcentral.`.
pub const STREAM: &str = "ORDERS";

/// `nats-server`, from `$PATH` or where Debian puts it.
fn binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/local/sbin".into()])
        .map(|d| d.join("nats-server"))
        .find(|p| p.is_file())
}

/// A running `nats-server -js`.
pub struct NatsServer {
    child: Option<Child>,
    bin: PathBuf,
    pub port: u16,
    /// JetStream's storage, kept across restarts.
    store: PathBuf,
    log: PathBuf,
    token: Option<String>,
}

impl NatsServer {
    /// Starts a server under `dir`, requiring `token` from clients if
    /// given. `None` (after a visible skip) when `nats-server` is missing.
    pub async fn start(dir: &Path, token: Option<&str>) -> Option<NatsServer> {
        let Some(bin) = binary() else {
            skip(
                "NATS",
                "nats-server is not installed (apt-get install nats-server)",
            );
            return None;
        };
        let mut server = NatsServer {
            child: None,
            bin,
            port: 0,
            store: dir.join("jetstream"),
            log: dir.join("nats-server.log"),
            token: token.map(str::to_string),
        };
        // A port picked free can be taken before the server binds it: try again.
        for _ in 0..5 {
            server.port = free_port();
            if server.spawn().await {
                return Some(server);
            }
        }
        panic!("nats-server did not start; log:\n{}", server.log_text());
    }

    /// Starts the process on `self.port`; whether it accepts connections.
    async fn spawn(&mut self) -> bool {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("nats-server log");
        let mut cmd = Command::new(&self.bin);
        cmd.args([
            "-a",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-js",
            "-sd",
        ])
        .arg(&self.store)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log);
        if let Some(t) = &self.token {
            cmd.args(["--auth", t]);
        }
        let mut child = cmd.spawn().expect("spawn nats-server");
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return false;
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                self.child = Some(child);
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM (JetStream flushes its files) and wait.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg(c.id().to_string())
                .status()
                .expect("kill runs");
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same port with the same storage.
    pub async fn restart(&mut self) {
        for _ in 0..100 {
            if self.spawn().await {
                return;
            }
            // The old socket may linger for a moment.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("nats-server did not restart; log:\n{}", self.log_text());
    }

    /// A client of our own (the test's consumer side).
    pub async fn client(&self) -> async_nats::Client {
        let mut options = async_nats::ConnectOptions::new();
        if let Some(t) = &self.token {
            options = options.token(t.clone());
        }
        options
            .connect(self.url())
            .await
            .expect("test client connects")
    }

    /// JetStream through a client of our own.
    pub async fn jetstream(&self) -> jetstream::Context {
        jetstream::new(self.client().await)
    }

    /// Creates [`STREAM`] on `certcentral.>`, file storage, a one-hour
    /// duplicate window (the tests' `give_up_after`).
    pub async fn create_stream(&self) -> jetstream::Context {
        let js = self.jetstream().await;
        let config = stream::Config {
            name: STREAM.to_string(),
            subjects: vec!["certcentral.>".to_string()],
            storage: stream::StorageType::File,
            duplicate_window: Duration::from_secs(3600),
            ..Default::default()
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            // JetStream may need a moment after the port opens.
            match js.create_stream(config.clone()).await {
                Ok(_) => return js,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("cannot create the stream: {e}"),
            }
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One message as the stream holds it.
#[derive(Debug, Clone)]
pub struct Stored {
    pub seq: u64,
    pub subject: String,
    pub msg_id: Option<String>,
    pub content_type: Option<String>,
    pub payload: Vec<u8>,
}

impl Stored {
    pub fn event(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).expect("a message holds JSON")
    }
}

/// How many messages [`STREAM`] holds now.
pub async fn stream_len(js: &jetstream::Context) -> u64 {
    match js.get_stream(STREAM).await {
        Ok(mut s) => s.info().await.map(|i| i.state.messages).unwrap_or(0),
        Err(_) => 0,
    }
}

/// Every message of [`STREAM`], in stream order, read by an ephemeral pull
/// consumer, as any consumer of the events would.
pub async fn read_stream(js: &jetstream::Context) -> Vec<Stored> {
    let mut stream = js.get_stream(STREAM).await.expect("the stream exists");
    let total = stream.info().await.expect("stream info").state.messages as usize;
    let consumer = stream
        .create_consumer(consumer::pull::Config {
            deliver_policy: consumer::DeliverPolicy::All,
            ack_policy: consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .expect("a consumer");
    let mut out = Vec::with_capacity(total);
    let deadline = Instant::now() + Duration::from_secs(60);
    while out.len() < total && Instant::now() < deadline {
        let mut batch = consumer
            .batch()
            .max_messages(1000)
            .expires(Duration::from_millis(500))
            .messages()
            .await
            .expect("fetch");
        while let Some(m) = batch.next().await {
            let m = m.expect("a message");
            let seq = m.info().map(|i| i.stream_sequence).unwrap_or(0);
            let header = |name: &str| {
                m.headers
                    .as_ref()
                    .and_then(|h| h.get(name))
                    .map(|v| v.as_str().to_string())
            };
            out.push(Stored {
                seq,
                subject: m.subject.to_string(),
                msg_id: header("Nats-Msg-Id"),
                content_type: header("Content-Type"),
                payload: m.payload.to_vec(),
            });
        }
    }
    assert_eq!(
        out.len(),
        total,
        "the consumer read only part of the stream"
    );
    assert!(
        out.windows(2).all(|w| w[0].seq < w[1].seq),
        "the consumer read out of stream order"
    );
    out
}

/// Every message published under `certcentral.>`, as a plain (not
/// JetStream) subscriber sees it: duplicates that JetStream drops are
/// counted here, so a test can tell that a publish was repeated.
#[derive(Clone, Default)]
pub struct Publishes(Arc<Mutex<HashMap<String, usize>>>);

impl Publishes {
    pub async fn watch(client: &async_nats::Client) -> Publishes {
        let mut sub = client.subscribe("certcentral.>").await.expect("subscribe");
        client.flush().await.expect("flush");
        let seen = Publishes::default();
        let s = seen.clone();
        tokio::spawn(async move {
            while let Some(m) = sub.next().await {
                let id = m
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("Nats-Msg-Id"))
                    .map(|v| v.as_str().to_string())
                    .unwrap_or_default();
                *s.0.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(id)
                    .or_insert(0) += 1;
            }
        });
        seen
    }

    /// Publishes seen in all.
    pub fn total(&self) -> usize {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .sum()
    }

    /// Distinct message ids seen.
    pub fn distinct(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}
