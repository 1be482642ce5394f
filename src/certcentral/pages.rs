//! Following the pages of one window without skipping an order.
//!
//! CertCentral lists support `offset`/`limit` pagination; see
//! [`PageFollower`] for why consecutive pages are asked to overlap.

use super::answer::Answer;
use super::orders::CompactOrder;

/// The `page` object of a paginated answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Page {
    pub total: u64,
    pub limit: u64,
    pub offset: u64,
}

/// Consecutive pages of one window overlap by up to this many orders.
pub const PAGE_OVERLAP: u64 = 20;

/// What to do after one page of a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextPage {
    /// The window is complete.
    Done,
    /// Ask for the page at this offset.
    At(u64),
    /// The list shifted more than the overlap: ask again from the first page.
    Restart,
}

/// Follows the pages of one window without skipping an order.
///
/// Offset pagination is only safe while the list holds still, and a
/// status-changes list does not: an order that changes again between two page
/// requests leaves its place (an absolute window drops it, a relative one
/// moves it to the end), every order after it moves up one place, and with
/// plain offsets the order just past the page boundary would never be
/// fetched — lost for good when no later window covers its time. So each page
/// is asked from a little before where the previous one ended and must
/// contain one of those already-seen orders with the status it had: every
/// order the window still holds after it is then on this page or a later one.
/// When none is there, the list shifted further than the overlap, and the
/// window starts again from its first page.
#[derive(Debug, Default)]
pub struct PageFollower {
    offset: u64,
    /// The previous page's last orders, which the next page must reach back to.
    tail: Vec<(i64, u32)>,
}

impl PageFollower {
    /// The offset to ask for next (0: the first page, sent without `offset`).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Takes one page's answer: its orders go to `into` (those the overlap
    /// repeats only once), and the answer says what to ask for next.
    pub fn take(&mut self, answer: Answer, into: &mut Vec<CompactOrder>) -> NextPage {
        let connected = self.tail.is_empty() || answer.orders.iter().any(|o| self.in_tail(o));
        let got = answer.orders.len() as u64;
        let more = answer
            .page
            .is_some_and(|page| got > 0 && self.offset + got < page.total);
        let next_tail = if connected && more {
            let overlap = (got / 4).clamp(1, PAGE_OVERLAP).min(got - 1);
            answer.orders[(got - overlap) as usize..]
                .iter()
                .map(|o| (o.order_id, o.status))
                .collect()
        } else {
            Vec::new()
        };
        // Every status listed is one the order really had, so even the
        // orders of a page that broke the chain are kept.
        if into.is_empty() && self.tail.is_empty() {
            // The first page (or the only one): taken as it is, not copied,
            // so a huge single answer is never held twice.
            *into = answer.orders;
        } else {
            into.extend(answer.orders.into_iter().filter(|o| !self.in_tail(o)));
        }
        if !connected {
            *self = PageFollower::default();
            return NextPage::Restart;
        }
        if !more {
            return NextPage::Done;
        }
        self.offset += got - next_tail.len() as u64;
        self.tail = next_tail;
        NextPage::At(self.offset)
    }

    fn in_tail(&self, o: &CompactOrder) -> bool {
        self.tail
            .iter()
            .any(|(id, status)| *id == o.order_id && *status == o.status)
    }
}

#[cfg(test)]
#[path = "pages_tests.rs"]
mod tests;
