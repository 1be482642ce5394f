//! SIGHUP: reopen files, and read the configuration again; a valid one
//! replaces the running generation (or, on a standby, the one it will lead
//! with), an invalid one is refused and the running one kept.

use std::path::Path;

use super::generation::{Generation, Prepared};
use super::{Daemon, load};

impl Daemon {
    /// Reopens files and, with a config file to read, replaces the running
    /// generation by one of the new config if it is valid (and `prepared`,
    /// what the next term starts with). Returns the generation that runs
    /// now and a status line.
    pub(super) async fn reload(
        &self,
        current: Generation,
        prepared: &mut Prepared,
    ) -> (Generation, String) {
        current.reopen();
        let Some(path) = &self.opts.config_path else {
            tracing::info!("SIGHUP: reopened files");
            return (current, "files reopened".to_string());
        };
        match self.reread(path) {
            Ok(next) => {
                current.stop().await;
                tracing::info!(config = %path.display(), sinks = next.sinks.len(), "SIGHUP: configuration reloaded");
                *prepared = next.clone();
                let status = format!("configuration reloaded from {}", path.display());
                (self.start(next), status)
            }
            Err(why) => (current, why),
        }
    }

    /// A standby's reload: the configuration it will lead with, if valid.
    /// Returns a status line.
    pub(super) fn reload_standby(&self, prepared: &mut Prepared) -> String {
        let Some(path) = &self.opts.config_path else {
            return "nothing to reload".to_string();
        };
        match self.reread(path) {
            Ok(next) => {
                tracing::info!(config = %path.display(), sinks = next.sinks.len(), "SIGHUP: configuration reloaded; it applies when this node leads");
                self.guard_wakes(&next);
                *prepared = next;
                format!("configuration reloaded from {}", path.display())
            }
            Err(why) => why,
        }
    }

    /// Reads and prepares the config file again; a refusal is logged and
    /// returned as a status line.
    fn reread(&self, path: &Path) -> Result<Prepared, String> {
        let next = load(path).and_then(|(config, key)| {
            if config.store != self.store_config {
                tracing::warn!(old = %self.store_config.location(), new = %config.store.location(), "{} changed; keeping the open store until a restart", config.store.key());
            }
            if config.metrics.as_ref().map(|m| m.listen) != self.metrics_addr {
                tracing::warn!("metrics.listen changed; it takes effect at the next restart");
            }
            if config.wake.as_ref().map(|w| w.listen) != self.wake_addr {
                tracing::warn!("wake.listen changed; it takes effect at the next restart");
            }
            self.prepare(config, key)
        });
        next.map_err(|e| {
            let why = one_line(&e.to_string());
            tracing::error!(error = %why, "SIGHUP: the new configuration is not valid; keeping the running one (files reopened)");
            format!("reload refused, running the previous configuration: {why}")
        })
    }
}

/// A multi-line error (TOML parse errors quote the offending line and point
/// at it) as one line, for a log line that journald and log shippers keep
/// together and for STATUS=, which is one line.
pub(super) fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| {
            !l.trim_matches(|c: char| c == '|' || c == '^' || c.is_whitespace())
                .is_empty()
        })
        .collect::<Vec<_>>()
        .join("; ")
}
