//! `orderwatch cancel ORDER_ID --note TEXT`.

use std::path::Path;
use std::sync::Arc;

use super::{Failure, load_config};
use crate::certcentral::{ApiError, Client};
use crate::cli::CancelArgs;
use crate::config::Config;
use crate::pacer::Pacer;

pub async fn run(config_flag: Option<&Path>, args: &CancelArgs) -> Result<(), Failure> {
    let config = load_config(config_flag)?;
    let key = config.digicert.api_key.load_header().map_err(|e| {
        Failure::usage(anyhow::anyhow!(
            "cannot read the DigiCert API key from {}: {e}",
            config.digicert.api_key
        ))
    })?;
    let pacer = Arc::new(Pacer::new(config.digicert.max_requests_per_minute));
    let client = Client::new(&config.digicert, key, pacer).map_err(Failure::runtime)?;
    match client.cancel(args.order_id, &args.note).await {
        Ok(()) => {
            println!(
                "order {} canceled; the next poll reports it as a \"canceled\" transition",
                args.order_id
            );
            wake_daemon(&config).await;
            Ok(())
        }
        Err(ApiError::Api {
            code,
            message,
            status,
            ..
        }) => Err(Failure::runtime(anyhow::anyhow!(
            "cannot cancel order {}: {code}: {message} (HTTP {status})",
            args.order_id
        ))),
        Err(e) => Err(Failure::runtime(
            anyhow::Error::new(e).context(format!("cannot cancel order {}", args.order_id)),
        )),
    }
}

/// With `[wake]` set, asks the local daemon to poll now, so the
/// cancellation is reported within seconds. The order is canceled either
/// way, so a daemon that cannot be woken is only worth a warning.
async fn wake_daemon(config: &Config) {
    let Some(wake) = &config.wake else {
        return;
    };
    let rung = match crate::wake::load_key(config) {
        Ok(key) => crate::wake::ring_local(wake, key.as_ref()).await,
        Err(e) => Err(format!("{e:#}")),
    };
    match rung {
        Ok(()) => println!("woke the local daemon ({}): it polls now", wake.local_url()),
        Err(why) => eprintln!(
            "warning: could not wake the local daemon ({why}); the cancellation is reported at its next scheduled poll"
        ),
    }
}
