//! Order statuses as CertCentral spells them, and the moves it allows
//! between them: the vocabulary the order book and the random schedule share.

use std::sync::Arc;

/// Offset between an order id and its certificate id for orders the
/// simulator invents, so a client that mixes the two up sees wrong numbers.
pub(crate) const CERTIFICATE_ID_OFFSET: i64 = 100_000_000;

/// An order status as CertCentral spells it. `Other` keeps statuses the
/// simulator does not know (set through `Simulator::set_status`) so tests can
/// check that a client copes with statuses DigiCert may add later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Status {
    Pending,
    WaitingPickup,
    NeedsApproval,
    Issued,
    Rejected,
    Canceled,
    Revoked,
    Expired,
    Other(Arc<str>),
}

const FROM_PENDING: &[(Status, u32)] = &[
    (Status::Issued, 4),
    (Status::WaitingPickup, 2),
    (Status::NeedsApproval, 2),
    (Status::Rejected, 1),
    (Status::Canceled, 1),
];
const FROM_NEEDS_APPROVAL: &[(Status, u32)] = &[
    (Status::Pending, 3),
    (Status::Rejected, 1),
    (Status::Canceled, 1),
];
const FROM_WAITING_PICKUP: &[(Status, u32)] = &[(Status::Issued, 3), (Status::Canceled, 1)];
const FROM_ISSUED: &[(Status, u32)] = &[(Status::Revoked, 1), (Status::Expired, 1)];

impl Status {
    /// Reads a status name; anything unknown becomes `Other` verbatim.
    pub(crate) fn parse(s: &str) -> Status {
        match s {
            "pending" => Status::Pending,
            "waiting_pickup" => Status::WaitingPickup,
            "needs_approval" => Status::NeedsApproval,
            "issued" => Status::Issued,
            "rejected" => Status::Rejected,
            "canceled" => Status::Canceled,
            "revoked" => Status::Revoked,
            "expired" => Status::Expired,
            other => Status::Other(Arc::from(other)),
        }
    }

    /// The wire spelling.
    pub(crate) fn as_str(&self) -> &str {
        match self {
            Status::Pending => "pending",
            Status::WaitingPickup => "waiting_pickup",
            Status::NeedsApproval => "needs_approval",
            Status::Issued => "issued",
            Status::Rejected => "rejected",
            Status::Canceled => "canceled",
            Status::Revoked => "revoked",
            Status::Expired => "expired",
            Status::Other(s) => s,
        }
    }

    /// Realistic next statuses with weights; empty for terminal statuses.
    /// Unknown statuses are treated as terminal: the simulator cannot guess
    /// what DigiCert would do with them.
    pub(crate) fn next_choices(&self) -> &'static [(Status, u32)] {
        match self {
            Status::Pending => FROM_PENDING,
            Status::NeedsApproval => FROM_NEEDS_APPROVAL,
            Status::WaitingPickup => FROM_WAITING_PICKUP,
            Status::Issued => FROM_ISSUED,
            _ => &[],
        }
    }

    /// Whether no further random change can happen to an order in this status.
    pub(crate) fn is_terminal(&self) -> bool {
        self.next_choices().is_empty()
    }

    /// Whether CertCentral lets an order in this status be canceled.
    pub(crate) fn is_cancelable(&self) -> bool {
        matches!(self, Status::Pending | Status::WaitingPickup)
    }
}
