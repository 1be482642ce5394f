//! Polls woken by a push: between polls a change waits half an interval on
//! average, so `POST /wake` (CertCentral's account webhook, a script that
//! just ordered or canceled something, `orderwatch cancel`) asks the poller
//! for a cycle now.
//!
//! A wake carries no data: the body is never read, and what the cycle
//! finds still comes only from the authenticated API, so a forged wake
//! costs one poll and nothing more. Wakes are coalesced: at most one extra
//! cycle per `[wake] min_gap`, never two cycles at once.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::http::HeaderName;
use futures_util::FutureExt;
use tokio::sync::Notify;

use crate::config::{Config, MIN_WAKE_KEY_LEN, Secret, WakeConfig};

pub mod listener;

pub use listener::{WakeAuth, bind, serve};

/// What became of one wake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wakeup {
    /// It asked for a cycle.
    Scheduled,
    /// A cycle it would have asked for was already due: nothing more.
    Coalesced,
}

/// The poller's doorbell, shared by the wake endpoint and the poller of
/// every configuration generation.
///
/// `pending` is set by the first wake after the poller took the last one
/// and cleared when a cycle starts ([`PollWake::take`]): every wake in
/// between is answered by that one cycle. A wake that arrives while a
/// cycle runs asks for the next one, since the running cycle may have
/// asked CertCentral before the change it announces.
#[derive(Debug, Default)]
pub struct PollWake {
    notify: Notify,
    pending: AtomicBool,
}

impl PollWake {
    pub fn new() -> Arc<PollWake> {
        Arc::new(PollWake::default())
    }

    /// Rings: a cycle soon, unless one is already due.
    pub fn wake(&self) -> Wakeup {
        if self.pending.swap(true, Ordering::AcqRel) {
            return Wakeup::Coalesced;
        }
        self.notify.notify_one();
        Wakeup::Scheduled
    }

    /// Resolves once a wake asked for a cycle (at once if one did while
    /// nobody was waiting).
    pub async fn rung(&self) {
        self.notify.notified().await;
    }

    /// A cycle starts: every wake so far is answered by it. Also drops a
    /// ring nobody waited for, so a scheduled cycle that happened to start
    /// first is not followed by a redundant one.
    pub fn take(&self) {
        // The ring first, then the flag. The other way round, a wake
        // between the two would set the flag and ring, and the ring would
        // be dropped here: the flag stays set, so every later wake is
        // "coalesced" into a cycle nobody asked for, until the next
        // scheduled one. This way such a wake is answered by the cycle
        // about to start, and one after it rings for the next.
        let _ = self.notify.notified().now_or_never();
        self.pending.store(false, Ordering::Release);
    }
}

/// Reads `[wake]`'s key, if one is configured, and refuses one too short
/// to resist guessing (the endpoint may face the internet through a proxy).
pub fn load_key(config: &Config) -> anyhow::Result<Option<Secret>> {
    let Some(source) = config.wake.as_ref().and_then(|w| w.key.as_ref()) else {
        return Ok(None);
    };
    let key_name = format!("wake{}", source.key_suffix("key"));
    let key = source.load().map_err(|e| {
        anyhow::anyhow!(
            "{}: {key_name}: cannot read the wake key from {source}: {e}",
            config.source.display()
        )
    })?;
    let len = key.expose().chars().count();
    if len < MIN_WAKE_KEY_LEN {
        anyhow::bail!(
            "{}: {key_name}: the wake key from {source} has {len} characters; use at least {MIN_WAKE_KEY_LEN} (CertCentral's webhook secrets have at least 32), e.g. `openssl rand -hex 24`",
            config.source.display(),
        );
    }
    Ok(Some(key))
}

/// What [`WakeAuth::set`] needs for a config and its loaded key.
pub fn required<'k>(config: &Config, key: Option<&'k Secret>) -> Option<(HeaderName, &'k Secret)> {
    let header = HeaderName::from_str(&config.wake.as_ref()?.header).ok()?;
    Some((header, key?))
}

/// Wakes the daemon of this machine (`orderwatch cancel` does, after the
/// order changed), so the change is polled now instead of at the next
/// interval. Best effort: the answer says what happened, for a message.
pub async fn ring_local(wake: &WakeConfig, key: Option<&Secret>) -> Result<(), String> {
    let url = wake.local_url();
    let client = crate::http::client_builder(std::time::Duration::from_secs(3))
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
    let mut request = client.post(&url);
    if let Some(key) = key {
        let mut value = reqwest::header::HeaderValue::from_str(key.expose())
            .map_err(|_| "the wake key is not a valid header value".to_string())?;
        value.set_sensitive(true);
        request = request.header(wake.header.as_str(), value);
    }
    match request.send().await {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(format!("{url} answered HTTP {}", r.status().as_u16())),
        Err(e) => Err(format!(
            "cannot reach {url}: {}",
            crate::http::error_chain(&e)
        )),
    }
}

#[cfg(test)]
mod tests;
