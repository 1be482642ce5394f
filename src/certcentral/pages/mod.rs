//! Following the pages of one window without skipping an order.
//!
//! CertCentral lists support `offset`/`limit` pagination; see
//! [`PageFollower`] for why consecutive pages are asked to overlap.

use super::answer::Answer;
pub use super::answer::Page;
use super::orders::CompactOrder;

/// Consecutive pages of one window overlap by up to this many orders.
pub const PAGE_OVERLAP: u64 = 20;

/// What to do after one page of a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextPage {
    /// The window is complete.
    Done,
    /// Ask for the page at this offset.
    At(u64),
    /// The list shifted more than the overlap: ask again from the first page.
    Restart,
    /// The pages cannot be believed (see [`PageFollower`]): fail the window.
    Refuse(String),
}

/// A window may take at most this many pages (at CertCentral's largest
/// page of 1000 orders, ten million orders).
pub const MAX_PAGES: u64 = 10_000;
/// `page.total` may grow this much beyond the first page's while a window
/// is read: a relative window ends "now" at every request, so changes made
/// meanwhile join it. More than that is a server that keeps raising it.
const TOTAL_SLACK: u64 = 100;

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
///
/// The pages are also held to what the first one promised, so a server that
/// lies cannot keep a window paging forever (spending the request budget,
/// growing memory, recording nothing): a `page.total` that would need more
/// than [`MAX_PAGES`] pages, one that keeps growing past what changes made
/// meanwhile explain, a page that adds no order while more are promised,
/// or more pages than twice the first page's estimate, fail the window.
#[derive(Debug, Default)]
pub struct PageFollower {
    offset: u64,
    /// The previous page's last orders, which the next page must reach back to.
    tail: Vec<(i64, u32)>,
    /// `page.total` of the first page, and the pages it takes at its size.
    promised: Option<(u64, u64)>,
    /// Pages taken since the first page.
    pages: u64,
}

impl PageFollower {
    /// The offset to ask for next (0: the first page, sent without `offset`).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Takes one page's answer: its orders go to `into` (those the overlap
    /// repeats only once), and the answer says what to ask for next.
    pub fn take(&mut self, answer: Answer, into: &mut Vec<CompactOrder>) -> NextPage {
        if let Some(refused) = self.believable(&answer).or_else(|| self.misplaced(&answer)) {
            return NextPage::Refuse(refused);
        }
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
            let promised = self.promised;
            *self = PageFollower::default();
            self.promised = promised;
            return NextPage::Restart;
        }
        if !more {
            return NextPage::Done;
        }
        if !self.tail.is_empty() && got <= self.tail.len() as u64 {
            return NextPage::Refuse(format!(
                "page {} at offset {} added no order while page.total still promises more; the pages are not believable",
                self.pages + 1,
                self.offset
            ));
        }
        self.offset += got - next_tail.len() as u64;
        self.tail = next_tail;
        NextPage::At(self.offset)
    }

    /// Why this page breaks what the first one promised, if it does.
    fn believable(&mut self, answer: &Answer) -> Option<String> {
        let page = answer.page?;
        let got = answer.orders.len() as u64;
        self.pages += 1;
        let Some((total, estimate)) = self.promised else {
            let estimate = page.total.div_ceil(got.max(1));
            if got > 0 && estimate > MAX_PAGES {
                return Some(format!(
                    "page.total says {} orders, {estimate} pages of {got}: more than the {MAX_PAGES} pages a window may take",
                    page.total
                ));
            }
            self.promised = Some((page.total, estimate.max(1)));
            if estimate > 10 {
                tracing::info!(
                    orders = page.total,
                    pages = estimate,
                    "a window of {} orders in about {estimate} pages",
                    page.total
                );
            }
            return None;
        };
        if page.total > total.saturating_add(TOTAL_SLACK.max(total / 100)) {
            return Some(format!(
                "page.total grew from {total} to {} while the window was read, more than changes made meanwhile explain",
                page.total
            ));
        }
        if self.pages > estimate.saturating_mul(2).saturating_add(10) {
            return Some(format!(
                "{} pages and still more promised, where the first page's total of {total} needs about {estimate}",
                self.pages
            ));
        }
        if self.pages.is_multiple_of(10) {
            tracing::info!(
                page = self.pages,
                of = estimate,
                offset = self.offset,
                "paging: page {} of about {estimate}",
                self.pages
            );
        }
        None
    }

    /// Why this page is not the one asked for, if it is not: a server (or
    /// a proxy) that ignores `offset` answers the first page again, whose
    /// last orders are the tail, so the overlap alone would take it for the
    /// next page and end the window without the orders after the first.
    /// The `page.offset` it echoes gives it away. (Where the tail sits in
    /// the page cannot: orders changed in the same second come in any
    /// order, so the tail may be anywhere among its ties.)
    fn misplaced(&self, answer: &Answer) -> Option<String> {
        if let Some(echoed) = answer.page.and_then(|p| p.offset)
            && echoed != self.offset
        {
            return Some(format!(
                "asked for the page at offset {} and got page.offset {echoed}; a server that does not honour offset cannot be paged",
                self.offset
            ));
        }
        let got = answer.orders.len() as u64;
        match answer.page {
            // The first page empty while page.total promises orders.
            Some(page) if got == 0 && self.tail.is_empty() && page.total > 0 => Some(format!(
                "the first page has no order while page.total says {}",
                page.total
            )),
            _ => None,
        }
    }

    fn in_tail(&self, o: &CompactOrder) -> bool {
        self.tail
            .iter()
            .any(|(id, status)| *id == o.order_id && *status == o.status)
    }
}

#[cfg(test)]
mod tests;
