//! `orderwatch demo`: the simulator, the daemon and a stdout sink in one
//! process, with nothing to configure and nothing left behind.

use std::path::Path;

use tokio_util::sync::CancellationToken;

use super::Failure;
use crate::cli::DemoArgs;
use crate::config::{Config, Secret};
use crate::daemon::{self, RunOptions};
use crate::simulator::{Simulator, SimulatorConfig};

const DEMO_KEY: &str = "demo-key";

/// The demo's configuration: what a real config file would say, pointed at
/// the simulator, polling every 2 seconds, with order details in events.
pub fn demo_config(base_url: &str, store: &Path) -> Result<Config, Failure> {
    let text = format!(
        r#"
[digicert]
base_url = {base_url:?}
api_key_env = "ORDERWATCH_DEMO_KEY"   # unused: the demo hands the key over directly
timeout = "10s"
max_requests_per_minute = 120
retries = 3
retry_initial = "500ms"
retry_max = "5s"

[poll]
interval = "2s"
overlap = "30s"

[store]
path = {store:?}

[enrich]
order_details = true

[[sinks]]
name = "stdout"
type = "stdout"
backoff_initial = "1s"
backoff_max = "10s"
give_up_after = "1h"
"#
    );
    Config::parse(&text, Path::new("(demo)"), &|_| None).map_err(Failure::runtime)
}

pub async fn run(args: &DemoArgs) -> Result<(), Failure> {
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
        // CertCentral's strict behaviour (rate limits, pages): the demo's
        // daemon paces itself well under it.
        ..SimulatorConfig::default()
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
         orderwatch polls it every 2s and prints each new status transition below as a CloudEvent (one JSON per line) with the order's details. \
         Store: {} (deleted on exit). Ctrl-C stops.",
        args.rate,
        dir.path().display()
    );
    let config = demo_config(&base_url, &dir.path().join("orderwatch.db"))?;
    let control = super::run::steer_by_signals()?;
    let result = daemon::run(
        config,
        Secret::new(DEMO_KEY),
        RunOptions::default(),
        control,
    )
    .await;
    stop.cancel();
    let _ = server.await;
    drop(dir);
    result.map_err(super::run::into_failure)
}
