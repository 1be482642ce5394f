//! [`Daemon`]: a running `orderwatch run`, its log, signals and exit.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use super::eventually;

/// A running `orderwatch run`. Killed on drop.
pub struct Daemon {
    pub child: Option<Child>,
    pub log: PathBuf,
}

impl Daemon {
    /// Spawns `cmd`, whose stderr the caller pointed at `log`.
    pub(super) fn spawn(mut cmd: Command, log: PathBuf) -> Daemon {
        let child = cmd.spawn().expect("spawn orderwatch");
        Daemon {
            child: Some(child),
            log,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{sig} failed");
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Whether the process is still running (not exited, not reaped).
    pub fn is_running(&mut self) -> bool {
        self.wait_timeout(Duration::ZERO).is_none() && self.child.is_some()
    }

    /// Waits for exit, up to `timeout`; `None` if still running.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let child = self.child.as_mut()?;
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then the exit status (panics if it takes over `timeout`).
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        self.signal("TERM");
        match self.wait_timeout(timeout) {
            Some(s) => s,
            None => panic!(
                "orderwatch did not stop within {timeout:?}; log:\n{}",
                self.log_text()
            ),
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the daemon has opened (and, if new, created) its store
    /// and started polling: its "orderwatch started" line. Panics with the
    /// log if it exits first or takes over 30 s.
    pub async fn wait_until_started(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.log_text().contains("orderwatch started") {
            if !self.is_running() {
                panic!("orderwatch exited at start; log:\n{}", self.log_text());
            }
            if Instant::now() >= deadline {
                panic!(
                    "orderwatch did not start in 30 s; log:\n{}",
                    self.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the log contains `needle` (panics with the log after 30 s).
    pub async fn wait_for_log(&self, needle: &str) {
        let found = eventually(Duration::from_secs(30), || self.log_text().contains(needle)).await;
        assert!(found, "log never said {needle:?}:\n{}", self.log_text());
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}
