//! CertCentral's clock, as orderwatch knows it: the offset of the `Date`
//! header of its answers from this machine's clock, learned again from
//! every answer.
//!
//! Windows are planned, and the cursor kept, in CertCentral's time. A
//! relative window ("the last N seconds") is counted back from CertCentral's
//! now anyway; planning N from a local clock that is behind it would ask for
//! too little, and a cursor taken from a local clock that is ahead would sit
//! in the future once that clock is corrected, so later windows would start
//! too late. Neither can happen when both are in CertCentral's time.

use std::sync::Mutex;

use chrono::{DateTime, TimeDelta, Utc};

/// The offset is learned from `Date` (whole seconds, taken when the answer
/// was written) against when the request left (before the network): it is
/// off by about a second plus the round trip, which the windows' `overlap`
/// absorbs many times over.
#[derive(Debug, Default)]
pub struct ApiClock {
    offset: Mutex<Option<TimeDelta>>,
}

impl ApiClock {
    /// CertCentral's now: this machine's clock plus the last offset seen
    /// (none before the first answer).
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.offset().unwrap_or_default()
    }

    /// The offset of CertCentral's clock from ours, once an answer said.
    pub fn offset(&self) -> Option<TimeDelta> {
        *self.offset.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Learns the offset from a request that left at `local` (our clock) and
    /// was answered at `api` (its `Date`). Says so when it is large: the
    /// machine's clock is off and should be fixed (NTP), even though
    /// polling copes.
    pub fn learn(&self, local: DateTime<Utc>, api: DateTime<Utc>) {
        let offset = api - local;
        let mut known = self.offset.lock().unwrap_or_else(|e| e.into_inner());
        let was = known.replace(offset);
        let large = offset.num_seconds().abs() > 60;
        let changed = was.is_none_or(|w| (w - offset).num_seconds().abs() > 60);
        if large && changed {
            tracing::warn!(
                offset_s = offset.num_seconds(),
                "this machine's clock is {}s {} CertCentral's; windows and the cursor follow CertCentral's clock, but fix the local one (NTP)",
                offset.num_seconds().abs(),
                if offset.num_seconds() > 0 {
                    "behind"
                } else {
                    "ahead of"
                }
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_follows_the_api_once_it_answered() {
        let clock = ApiClock::default();
        assert_eq!(clock.offset(), None);
        let local = Utc::now();
        clock.learn(local, local + TimeDelta::hours(2));
        let ahead = clock.now() - Utc::now();
        assert!(
            (ahead - TimeDelta::hours(2)).num_seconds().abs() <= 1,
            "{ahead}"
        );
        clock.learn(local, local - TimeDelta::minutes(5));
        assert_eq!(clock.offset(), Some(TimeDelta::minutes(-5)));
    }
}
