//! How the outside world steers a running daemon. `orderwatch run` turns
//! SIGTERM/SIGINT and SIGHUP into these calls; in-process tests make them
//! directly. The daemon takes its control from outside, so nothing in it
//! installs a signal handler.

use std::sync::Arc;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// What the daemon is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Stop polling, let in-flight deliveries finish (grace period), exit.
    Shutdown,
    /// Reopen files and reload the configuration if it is valid.
    Reload,
}

/// A handle to a daemon: cheap to clone, every clone steers the same one.
#[derive(Clone, Debug, Default)]
pub struct Control {
    shutdown: CancellationToken,
    reload: Arc<Notify>,
}

impl Control {
    pub fn new() -> Control {
        Control::default()
    }

    /// Asks the daemon to stop; every later [`Control::next`] says so too.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Asks the daemon to reload; several requests before it gets to them
    /// are one reload.
    pub fn reload(&self) {
        self.reload.notify_one();
    }

    pub fn is_shutdown(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    /// The next request. Shutdown wins over a pending reload.
    pub async fn next(&self) -> Request {
        tokio::select! {
            biased;
            _ = self.shutdown.cancelled() => Request::Shutdown,
            _ = self.reload.notified() => Request::Reload,
        }
    }
}
