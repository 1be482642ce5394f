//! `orderwatch simulate`: the embedded CertCentral stand-in on its own.

use super::Failure;
use crate::cli::SimulateArgs;
use crate::simulator::{Simulator, SimulatorConfig};

pub async fn run(args: &SimulateArgs) -> Result<(), Failure> {
    if !(args.rate.is_finite() && args.rate >= 0.0) {
        return Err(Failure::usage(anyhow::anyhow!(
            "--rate {}: expected a number of changes per minute, 0 or more",
            args.rate
        )));
    }
    if args.page_size == Some(0) {
        return Err(Failure::usage(anyhow::anyhow!(
            "--page-size must be at least 1"
        )));
    }
    let sim = Simulator::new(SimulatorConfig {
        api_key: args.api_key.clone(),
        seed: args.seed,
        rate_per_min: args.rate,
        initial_orders: args.orders,
        page_size: args.page_size.or(SimulatorConfig::default().page_size),
        ..SimulatorConfig::default()
    });
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| Failure::runtime(anyhow::anyhow!("cannot listen on {}: {e}", args.listen)))?;
    let addr = listener.local_addr().map_err(Failure::runtime)?;
    eprintln!(
        "CertCentral simulator on http://{addr}/services/v2 (X-DC-DEVKEY: {}); {} orders, {} random changes/min, seed {}. Ctrl-C stops.",
        args.api_key, args.orders, args.rate, args.seed
    );
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    sim.serve(listener, terminate_or(stop))
        .await
        .map_err(Failure::runtime)
}

/// Resolves on SIGTERM or when `other` does.
async fn terminate_or(other: impl Future<Output = ()>) {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = other => {}
            }
        }
        Err(_) => other.await,
    }
}
