//! `orderwatch demo`: the simulator, the daemon and a stdout sink in one
//! process, with nothing to configure and nothing left behind.

use std::path::PathBuf;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Failure, Outcome};
use crate::cli::DemoArgs;
use crate::config::{
    Config, DeliveryPolicy, DigicertConfig, PollConfig, Secret, SecretSource, SinkConfig, SinkKind,
    StoreConfig,
};
use crate::daemon::{self, RunError, RunOptions};
use crate::simulator::{Simulator, SimulatorConfig};

const DEMO_KEY: &str = "demo-key";

/// The demo's configuration: what a real config file would say, pointed at
/// the simulator, polling every 2 seconds.
pub fn demo_config(base_url: String, store: PathBuf) -> Config {
    Config {
        source: PathBuf::from("(demo)"),
        digicert: DigicertConfig {
            base_url,
            api_key: SecretSource::Env("(demo)".into()),
            timeout: Duration::from_secs(10),
            timezone: chrono_tz::America::Denver,
            max_requests_per_minute: 120,
            max_response_bytes: 256 << 20,
            retries: 3,
            retry_initial: Duration::from_millis(500),
            retry_max: Duration::from_secs(5),
        },
        poll: PollConfig {
            interval: Duration::from_secs(2),
            overlap: Duration::from_secs(30),
            initial_lookback: Duration::from_secs(3600),
            max_window: Duration::from_secs(7 * 86400),
        },
        store: StoreConfig { path: store },
        metrics: None,
        sinks: vec![SinkConfig {
            name: "stdout".into(),
            statuses: None,
            kind: SinkKind::Stdout,
            retry: DeliveryPolicy {
                backoff_initial: Duration::from_secs(1),
                backoff_max: Duration::from_secs(10),
                give_up_after: Duration::from_secs(3600),
            },
        }],
    }
}

pub async fn run(args: &DemoArgs) -> Outcome {
    if !(args.rate.is_finite() && args.rate >= 0.0) {
        return Err(Failure::usage(anyhow::anyhow!("--rate must be 0 or more")));
    }
    let dir = tempfile::Builder::new()
        .prefix("orderwatch-demo-")
        .tempdir()
        .map_err(|e| {
            Failure::runtime(anyhow::anyhow!("cannot create a temporary directory: {e}"))
        })?;
    let sim = Simulator::new(SimulatorConfig {
        api_key: DEMO_KEY.into(),
        seed: args.seed,
        rate_per_min: args.rate,
        initial_orders: 12,
        page_size: None,
    });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(|e| Failure::runtime(anyhow::anyhow!("cannot start the simulator: {e}")))?;
    let addr = listener.local_addr().map_err(Failure::runtime)?;
    let stop = CancellationToken::new();
    let server = {
        let stop = stop.clone();
        let sim = sim.clone();
        tokio::spawn(async move { sim.serve(listener, stop.cancelled_owned()).await })
    };
    let base_url = format!("http://{addr}/services/v2");
    eprintln!(
        "orderwatch demo: a simulated CertCentral account at {base_url} changes ~{} orders a minute; \
         orderwatch polls it every 2s and prints each new status transition below as a CloudEvent (one JSON per line). \
         Store: {} (deleted on exit). Ctrl-C stops.",
        args.rate,
        dir.path().display()
    );
    let config = demo_config(base_url, dir.path().join("orderwatch.db"));
    let result = daemon::run(config, Secret::new(DEMO_KEY), RunOptions::default()).await;
    stop.cancel();
    let _ = server.await;
    drop(dir);
    result.map_err(|e| match e {
        RunError::Config(e) => Failure::usage(e),
        RunError::Runtime(e) => Failure::runtime(e),
    })
}
