//! `orderwatch run [--once]`.

use std::path::Path;

use super::{Failure, Outcome, config_path};
use crate::cli::RunArgs;
use crate::daemon::{self, RunError, RunOptions};

pub async fn run(config_flag: Option<&Path>, args: &RunArgs) -> Outcome {
    let path = config_path(config_flag);
    let (config, key) = daemon::load(&path).map_err(into_failure)?;
    let opts = RunOptions {
        once: args.once,
        drain_timeout: args.drain_timeout,
        config_path: Some(path),
    };
    daemon::run(config, key, opts).await.map_err(into_failure)
}

fn into_failure(e: RunError) -> Failure {
    match e {
        RunError::Config(e) => Failure::usage(e),
        RunError::Runtime(e) => Failure::runtime(e),
    }
}
