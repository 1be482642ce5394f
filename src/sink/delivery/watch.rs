//! The store watch of a daemon: a thread of its own asks the store once a
//! second whether anything was committed since it last asked, by this
//! process or another (`orderwatch redeliver` queueing rows or lifting a
//! pause, an alert raised), and wakes every loop when something was. An
//! idle loop then sleeps until its next delivery falls due instead of
//! querying the store every second itself, and a second in which nothing
//! changed costs one thread wake-up and one tiny read, with no task of the
//! runtime woken: the idle daemon's CPU was mostly those looks.
//!
//! The watch only ever adds wake-ups. A store that cannot tell cheaply
//! ([`Store::version_probe`] is `None`, as on PostgreSQL) leaves it off,
//! and one that fails to answer turns it off until it answers again: then
//! the loops look every second themselves, as they do without it. While it
//! is on, a loop still looks every [`WATCHED_LOOK`] whatever it was told.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{RecvTimeoutError, channel};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{IDLE_POLL, Wake};
use crate::sink::retry::millis;
use crate::store::{SharedStore, VersionProbe};

/// While the watch is on, an idle loop looks at the store at least this
/// often anyway.
pub const WATCHED_LOOK: Duration = Duration::from_secs(60);

/// Whether the watch is on, shared by the watch and the loops it wakes.
#[derive(Clone, Default, Debug)]
pub struct Watched(Arc<AtomicBool>);

impl Watched {
    /// How long an idle loop may go without looking at the store.
    pub fn look_every(&self) -> Duration {
        if self.0.load(Ordering::Acquire) {
            WATCHED_LOOK
        } else {
            IDLE_POLL
        }
    }

    /// How long an idle loop sleeps when its next row falls due at `due`
    /// (unix ms; `None`: nothing is pending): until then (at once if it
    /// is due), but no longer than [`Watched::look_every`].
    pub fn idle_until(&self, due: Option<i64>, now: i64) -> Duration {
        let look = self.look_every();
        match due {
            Some(t) => Duration::from_millis((t - now).clamp(0, millis(look)).unsigned_abs()),
            None => look,
        }
    }

    /// Turns the watch on or off; whether that changed anything.
    fn set(&self, on: bool) -> bool {
        self.0.swap(on, Ordering::AcqRel) != on
    }
}

/// Watches `store` until `stop`, waking `loops` after every change. Returns
/// at once for a store that cannot tell changes cheaply.
pub async fn run(store: SharedStore, loops: Wake, watched: Watched, stop: CancellationToken) {
    let Some(probe) = store.version_probe() else {
        tracing::debug!(
            "store watch: this store cannot tell changes cheaply; delivery loops look every second"
        );
        return;
    };
    // Dropping `quit` (at `stop`) ends the thread at once.
    let (quit, asked) = channel::<()>();
    let thread = std::thread::Builder::new()
        .name("orderwatch-watch".into())
        .spawn(move || watch(probe, &loops, &watched, || asked.recv_timeout(IDLE_POLL)));
    let thread = match thread {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "cannot start the store watch thread; delivery loops look every second");
            return;
        }
    };
    stop.cancelled().await;
    drop(quit);
    // The probe holds a connection: let it go before the store does.
    let _ = tokio::task::spawn_blocking(move || thread.join()).await;
}

/// The watch thread: probes, wakes `loops` after a change and whenever
/// the watch turns on or off (a loop sleeping for [`WATCHED_LOOK`] must
/// hear that it is on its own again), then waits on `pause` until it says
/// the daemon stops.
fn watch(
    mut probe: VersionProbe,
    loops: &Wake,
    watched: &Watched,
    mut pause: impl FnMut() -> Result<(), RecvTimeoutError>,
) {
    let mut last = None;
    loop {
        let version = match probe() {
            Ok(v) => Some(v),
            Err(e) if e.is_fatal() => {
                if watched.set(false) {
                    loops.all();
                }
                return;
            }
            Err(e) => {
                // The loops meet the same failure and say so; until the
                // store answers again they look every second.
                tracing::debug!(error = %e, "store watch: cannot read the store's version");
                None
            }
        };
        let flipped = watched.set(version.is_some());
        if flipped || (version.is_some() && version != last) {
            loops.all();
        }
        last = version;
        if pause() != Err(RecvTimeoutError::Timeout) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::path::PathBuf;

    use futures_util::FutureExt;
    use tokio::sync::Notify;

    use super::*;
    use crate::store::StoreError;

    /// The watch wakes the loops after a change and whenever it turns on
    /// or off, never when nothing moved; a failing store turns it off
    /// until it answers, and a fatal failure ends it, off.
    #[test]
    fn the_watch_wakes_on_changes_and_turns_off_while_the_store_fails() {
        let failing = || StoreError::Task("disk I/O error".into());
        let replaced = StoreError::Replaced {
            path: PathBuf::from("ow.db"),
        };
        let mut answers: VecDeque<Result<i64, StoreError>> = VecDeque::from([
            Ok(7),
            Ok(7),
            Ok(8),
            Err(failing()),
            Err(failing()),
            Ok(8),
            Ok(8),
            Err(replaced),
        ]);
        let probe: VersionProbe = Box::new(move || answers.pop_front().expect("probed too often"));
        let notify = Arc::new(Notify::new());
        let loops = Wake::new(vec![Arc::clone(&notify)]);
        let watched = Watched::default();
        assert_eq!(watched.look_every(), IDLE_POLL, "off until it answers");
        let woken = || notify.notified().now_or_never().is_some();
        let mut seen = Vec::new();
        watch(probe, &loops, &watched, || {
            seen.push((woken(), watched.look_every()));
            Err(RecvTimeoutError::Timeout)
        });
        let (on, off) = (WATCHED_LOOK, IDLE_POLL);
        assert_eq!(
            seen,
            [
                (true, on),   // turned on
                (false, on),  // nothing moved
                (true, on),   // a commit
                (true, off),  // the store fails: loops look themselves
                (false, off), // still failing
                (true, on),   // it answers again
                (false, on),
            ]
        );
        // The fatal failure: off, the loops told, and no more probes.
        assert!(woken());
        assert_eq!(watched.look_every(), off);
    }

    /// The thread ends when the daemon stops, between two probes.
    #[test]
    fn the_watch_ends_when_told() {
        let probe: VersionProbe = Box::new(|| Ok(1));
        let loops = Wake::new(vec![Arc::new(Notify::new())]);
        let mut pauses = 0;
        watch(probe, &loops, &Watched::default(), || {
            pauses += 1;
            Err(if pauses < 3 {
                RecvTimeoutError::Timeout
            } else {
                RecvTimeoutError::Disconnected
            })
        });
        assert_eq!(pauses, 3);
    }
}
