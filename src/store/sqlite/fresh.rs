//! The orders a chunk sees for the first time (most of a first catch-up):
//! their transitions cannot exist yet, so they go in many rows per
//! statement.

use rusqlite::params;

use super::queue::{New, queue};
use crate::store::{Hold, RecordSummary, SinkRoute};
use crate::transition::OrderChange;

/// Orders seen for the first time, inserted [`FreshOrders::BATCH`] at a time
/// with multi-row statements: a first catch-up of a large account is almost
/// all of these, and one statement per row is most of its cost.
#[derive(Default)]
pub(super) struct FreshOrders<'a> {
    pub(super) rows: Vec<&'a OrderChange>,
}

impl FreshOrders<'_> {
    pub(super) const BATCH: usize = 64;

    pub(super) fn flush(
        &mut self,
        tx: &rusqlite::Transaction<'_>,
        seen_ms: i64,
        routes: &[SinkRoute],
        hold: &Hold,
        summary: &mut RecordSummary,
    ) -> rusqlite::Result<()> {
        let n = self.rows.len();
        if n == 0 {
            return Ok(());
        }
        let mut transitions = tx.prepare_cached(&rows_sql(
            "INSERT INTO transitions (order_id, status, certificate_id, previous_status, seen_at) VALUES ",
            "(?, ?, ?, NULL, ?)",
            n,
        ))?;
        // Bound in place: no value or string is allocated per row.
        for (i, c) in self.rows.iter().enumerate() {
            transitions.raw_bind_parameter(i * 4 + 1, c.order_id)?;
            transitions.raw_bind_parameter(i * 4 + 2, &*c.status)?;
            transitions.raw_bind_parameter(i * 4 + 3, c.certificate_id)?;
            transitions.raw_bind_parameter(i * 4 + 4, seen_ms)?;
        }
        transitions.raw_execute()?;
        // A multi-row insert into a rowid table numbers its rows
        // consecutively; checked, so a surprise can never misattribute.
        let last = tx.last_insert_rowid();
        let first = last - (n as i64 - 1);
        let consecutive: bool = tx
            .prepare_cached(
                "SELECT count(*) = 2 FROM transitions WHERE (seq = ?1 AND order_id = ?2) OR (seq = ?3 AND order_id = ?4)",
            )?
            .query_row(
                params![first, self.rows[0].order_id, last, self.rows[n - 1].order_id],
                |r| r.get(0),
            )?;
        let mut orders = tx.prepare_cached(&rows_sql(
            "INSERT INTO orders (order_id, certificate_id, status, updated_at) VALUES ",
            "(?, ?, ?, ?)",
            n,
        ))?;
        for (i, c) in self.rows.iter().enumerate() {
            orders.raw_bind_parameter(i * 4 + 1, c.order_id)?;
            orders.raw_bind_parameter(i * 4 + 2, c.certificate_id)?;
            orders.raw_bind_parameter(i * 4 + 3, &*c.status)?;
            orders.raw_bind_parameter(i * 4 + 4, seen_ms)?;
        }
        orders.raw_execute()?;
        for (i, c) in self.rows.iter().enumerate() {
            let seq = if consecutive {
                first + i as i64
            } else {
                tx.query_row(
                    "SELECT seq FROM transitions WHERE order_id = ?1 AND status = ?2 AND occurrence = 0",
                    params![c.order_id, &*c.status],
                    |r| r.get(0),
                )?
            };
            let new = New {
                seq,
                change: c,
                occurrence: 0,
                previous: None,
            };
            queue(tx, routes, hold, &new, seen_ms, summary)?;
        }
        self.rows.clear();
        Ok(())
    }
}

/// `head` followed by `n` copies of `row`, comma-separated: the SQL of a
/// multi-row insert (the statement cache keys on it).
fn rows_sql(head: &str, row: &str, n: usize) -> String {
    let mut sql = String::with_capacity(head.len() + n * (row.len() + 2));
    sql.push_str(head);
    for i in 0..n {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(row);
    }
    sql
}
