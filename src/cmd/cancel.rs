//! `orderwatch cancel ORDER_ID --note TEXT`.

use std::path::Path;
use std::sync::Arc;

use super::{Failure, load_config};
use crate::certcentral::{ApiError, Client};
use crate::cli::CancelArgs;
use crate::pacer::Pacer;

pub async fn run(config_flag: Option<&Path>, args: &CancelArgs) -> Result<(), Failure> {
    let config = load_config(config_flag)?;
    let key = config.digicert.api_key.load().map_err(|e| {
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
