//! `orderwatch run [--once]`: the daemon, steered by signals.

use std::path::Path;

use anyhow::Context;

use super::{Failure, config_path};
use crate::cli::RunArgs;
use crate::daemon::{self, Control, Request, RunError, RunOptions};
use crate::service::Signals;

pub async fn run(config_flag: Option<&Path>, args: &RunArgs) -> Result<(), Failure> {
    let path = config_path(config_flag);
    let (config, key) = daemon::load(&path).map_err(into_failure)?;
    let opts = RunOptions {
        once: args.once,
        drain_timeout: args.drain_timeout,
        config_path: Some(path),
        ..RunOptions::default()
    };
    let control = steer_by_signals()?;
    daemon::run(config, key, opts, control)
        .await
        .map_err(into_failure)
}

/// A [`Control`] driven by signals: SIGTERM and SIGINT stop the daemon,
/// SIGHUP reloads it.
pub fn steer_by_signals() -> Result<Control, Failure> {
    let mut signals = Signals::new()
        .context("cannot install signal handlers")
        .map_err(Failure::runtime)?;
    let control = Control::new();
    let steered = control.clone();
    tokio::spawn(async move {
        loop {
            match signals.next().await {
                Request::Shutdown => steered.shutdown(),
                Request::Reload => steered.reload(),
            }
        }
    });
    Ok(control)
}

pub fn into_failure(e: RunError) -> Failure {
    match e {
        RunError::Config(e) => Failure::usage(e),
        RunError::Runtime(e) => Failure::runtime(e),
    }
}
