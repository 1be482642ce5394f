//! What a new sighting of an order amounts to, compared with the order as
//! the store knows it: the one definition of dedupe every backend uses.

use std::num::NonZeroI64;
use std::sync::Arc;

use crate::transition::{Dedupe, OrderChange};

/// An order as the store knows it: its current status and certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Current {
    pub(crate) status: Arc<str>,
    pub(crate) certificate_id: Option<NonZeroI64>,
}

/// What a sighting of a known order is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sighting {
    /// Nothing changed (overlapping windows, re-polls, restarts).
    Repeat,
    /// Same status, and a certificate to remember without an event: the
    /// first one seen for the order, or (in first-sighting mode) a new one.
    Refresh,
    Transition,
}

impl Current {
    pub(crate) fn new(status: Arc<str>, certificate_id: Option<i64>) -> Current {
        Current {
            status,
            certificate_id: certificate_id.and_then(NonZeroI64::new),
        }
    }

    pub(crate) fn compare(&self, change: &OrderChange, dedupe: Dedupe) -> Sighting {
        let certificate = change.certificate_id.and_then(NonZeroI64::new);
        if *self.status != *change.status {
            return Sighting::Transition;
        }
        match (self.certificate_id, certificate) {
            // A reissue that finished between two polls: same status,
            // another certificate.
            (Some(known), Some(seen)) if known != seen => match dedupe {
                Dedupe::Change => Sighting::Transition,
                Dedupe::FirstSighting => Sighting::Refresh,
            },
            (None, Some(_)) => Sighting::Refresh,
            _ => Sighting::Repeat,
        }
    }

    /// The order after `change` was recorded: its status, and its
    /// certificate unless the sighting had none.
    pub(crate) fn after(old: Option<&Current>, change: &OrderChange) -> Current {
        Current {
            status: Arc::clone(&change.status),
            certificate_id: change
                .certificate_id
                .and_then(NonZeroI64::new)
                .or(old.and_then(|c| c.certificate_id)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(status: &str, certificate: Option<i64>) -> OrderChange {
        OrderChange {
            order_id: 1,
            certificate_id: certificate,
            status: Arc::from(status),
        }
    }

    #[test]
    fn sightings_compare_by_status_then_certificate() {
        let issued = Current::new(Arc::from("issued"), Some(10));
        let change = Dedupe::Change;
        let strict = Dedupe::FirstSighting;
        for (sighting, mode, expected) in [
            (seen("issued", Some(10)), change, Sighting::Repeat),
            (seen("issued", None), change, Sighting::Repeat),
            (seen("issued", Some(11)), change, Sighting::Transition),
            (seen("issued", Some(11)), strict, Sighting::Refresh),
            (seen("revoked", Some(10)), change, Sighting::Transition),
            (seen("revoked", Some(10)), strict, Sighting::Transition),
        ] {
            assert_eq!(
                issued.compare(&sighting, mode),
                expected,
                "{sighting:?} {mode:?}"
            );
        }
        let unknown = Current::new(Arc::from("pending"), None);
        assert_eq!(
            unknown.compare(&seen("pending", Some(5)), change),
            Sighting::Refresh
        );
        // A certificate id of 0 is no certificate.
        assert_eq!(
            unknown.compare(&seen("pending", Some(0)), change),
            Sighting::Repeat
        );
        let next = Current::after(Some(&issued), &seen("revoked", None));
        assert_eq!(next, Current::new(Arc::from("revoked"), Some(10)));
    }
}
