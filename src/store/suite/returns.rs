//! Recording: repeats are not transitions, statuses that come back and new
//! certificates are, with counted ids.

use super::*;

pub async fn repeated_sightings_are_not_transitions_and_previous_status_is_kept(s: SharedStore) {
    let sinks = [rows("a", None)];
    let both = [change(1, "pending"), change(2, "issued")];
    let s1 = window(&s, &both, at(0), at(0), &sinks).await;
    assert_eq!(s1.new_transitions(), 2);
    let s2 = window(&s, &both, at(60), at(60), &sinks).await;
    assert_eq!((s2.new_transitions(), s2.queued), (0, 0));
    let s3 = window(&s, &[change(1, "issued")], at(120), at(120), &sinks).await;
    assert_eq!(s3.sample[0].previous_status.as_deref(), Some("pending"));
    assert_eq!(s.cursor().await.unwrap(), Some(at(120)));
}

pub async fn a_status_seen_before_is_not_a_transition_in_first_sighting_mode(s: SharedStore) {
    let sinks = [rows("a", None)];
    let mut flip = Chunk::whole(
        vec![
            change(1, "pending"),
            change(1, "needs_approval"),
            change(1, "pending"),
        ],
        Some(at(0)),
        at(0),
    );
    flip.dedupe = Dedupe::FirstSighting;
    let recorded = s.record(flip, sinks.as_slice().into()).await.unwrap();
    assert_eq!(recorded.new_transitions(), 2);
    // The order's current status is still the last one seen.
    let next = window(&s, &[change(1, "issued")], at(1), at(1), &sinks).await;
    assert_eq!(next.sample[0].previous_status.as_deref(), Some("pending"));
}

fn with_certificate(order_id: i64, status: &str, certificate_id: Option<i64>) -> OrderChange {
    OrderChange {
        order_id,
        certificate_id,
        status: Arc::from(status),
    }
}

/// `(id, previous_status, certificate_id)` of every event, oldest first.
async fn event_log(s: &SharedStore) -> Vec<(String, Option<String>, Option<i64>)> {
    let mut all = s.events(&all_events()).await.unwrap();
    all.reverse();
    all.into_iter()
        .map(|t| (t.event_id(), t.previous_status, t.certificate_id))
        .collect()
}

fn ids(log: &[(String, Option<String>, Option<i64>)]) -> Vec<&str> {
    log.iter().map(|(id, _, _)| id.as_str()).collect()
}

pub async fn a_status_that_comes_back_is_a_transition_with_a_counted_id(s: SharedStore) {
    let sinks = [rows("a", None)];
    let flip = [
        change(1, "pending"),
        change(1, "needs_approval"),
        change(1, "pending"),
    ];
    let first = s
        .record(
            Chunk::whole(flip.to_vec(), Some(at(0)), at(0)),
            sinks.as_slice().into(),
        )
        .await
        .unwrap();
    assert_eq!((first.new_transitions(), first.queued), (3, 3));
    // A reissue: issued, reissue_pending, issued again (another certificate).
    window(&s, &[change(1, "issued")], at(1), at(1), &sinks).await;
    window(&s, &[change(1, "reissue_pending")], at(2), at(2), &sinks).await;
    let again = with_certificate(1, "issued", Some(5001));
    let reissued = window(&s, &[again], at(3), at(3), &sinks).await;
    assert_eq!(reissued.new_transitions(), 1);
    assert_eq!(reissued.sample[0].event_id(), "1:issued:1");
    let log = event_log(&s).await;
    assert_eq!(
        ids(&log),
        [
            "1:pending",
            "1:needs_approval",
            "1:pending:1",
            "1:issued",
            "1:reissue_pending",
            "1:issued:1"
        ]
    );
    let previous: Vec<_> = log.iter().map(|(_, p, _)| p.as_deref()).collect();
    assert_eq!(
        previous,
        [
            None,
            Some("pending"),
            Some("needs_approval"),
            Some("pending"),
            Some("issued"),
            Some("reissue_pending")
        ]
    );
    assert_eq!(log[5].2, Some(5001));
    // Each went to the sink once, in order.
    assert_eq!(stats(&s, &sinks[0]).await.pending, 6);
}

pub async fn a_new_certificate_with_the_same_status_is_a_transition(s: SharedStore) {
    let sinks = [rows("a", None)];
    let issued = |c| with_certificate(7, "issued", Some(c));
    window(&s, &[issued(10)], at(0), at(0), &sinks).await;
    let repeat = window(&s, &[issued(10)], at(1), at(1), &sinks).await;
    assert_eq!(repeat.new_transitions(), 0);
    // A reissue that finished between two polls: only the certificate moved.
    let reissue = window(&s, &[issued(11)], at(2), at(2), &sinks).await;
    assert_eq!((reissue.new_transitions(), reissue.queued), (1, 1));
    let log = event_log(&s).await;
    assert_eq!(
        log,
        [
            ("7:issued".to_string(), None, Some(10)),
            (
                "7:issued:1".to_string(),
                Some("issued".to_string()),
                Some(11)
            ),
        ]
    );
    // First-sighting mode reports neither returns nor new certificates.
    let mut strict = Chunk::whole(vec![issued(12)], Some(at(3)), at(3));
    strict.dedupe = Dedupe::FirstSighting;
    let quiet = s.record(strict, sinks.as_slice().into()).await.unwrap();
    assert_eq!(quiet.new_transitions(), 0);
    // The current certificate moved on all the same.
    let back = window(&s, &[issued(12)], at(4), at(4), &sinks).await;
    assert_eq!(back.new_transitions(), 0);
}

pub async fn a_sighting_without_a_certificate_is_a_repeat(s: SharedStore) {
    let sinks = [rows("a", None)];
    let seen = |c| with_certificate(3, "pending", c);
    window(&s, &[seen(None)], at(0), at(0), &sinks).await;
    // The first certificate id of an order is news about it, not a change.
    let learned = window(&s, &[seen(Some(30))], at(1), at(1), &sinks).await;
    assert_eq!(learned.new_transitions(), 0);
    let missing = window(&s, &[seen(None)], at(2), at(2), &sinks).await;
    assert_eq!(missing.new_transitions(), 0);
    // Compared with the certificate learned above, 31 is a change.
    let moved = window(&s, &[seen(Some(31))], at(3), at(3), &sinks).await;
    assert_eq!(moved.sample[0].event_id(), "3:pending:1");
    // The same within one answer: an order listed twice.
    let both = vec![
        with_certificate(4, "issued", None),
        with_certificate(4, "issued", Some(40)),
    ];
    let twice = s
        .record(
            Chunk::whole(both, Some(at(4)), at(4)),
            sinks.as_slice().into(),
        )
        .await
        .unwrap();
    assert_eq!(twice.new_transitions(), 1);
    let later = window(
        &s,
        &[with_certificate(4, "issued", Some(41))],
        at(5),
        at(5),
        &sinks,
    )
    .await;
    assert_eq!(later.sample[0].event_id(), "4:issued:1");
}

pub async fn returns_are_counted_across_windows_and_overlaps_emit_nothing_twice(s: SharedStore) {
    let sinks = [rows("a", None), in_order("file", None)];
    let script = [
        ("pending", 1),
        ("pending", 0),
        ("issued", 1),
        ("issued", 0),
        ("issued", 0),
        ("pending", 1),
        ("pending", 0),
        ("issued", 1),
        ("pending", 1),
    ];
    for (i, (status, new)) in script.into_iter().enumerate() {
        let t = at(i as i64 * 60);
        // Each window repeats the previous answer (the overlap) before the news.
        let mut answer = vec![change(2, "revoked")];
        answer.push(change(1, status));
        let summary = window(&s, &answer, t, t, &sinks).await;
        let expected_new = new + u64::from(i == 0);
        assert_eq!(summary.new_transitions(), expected_new, "window {i}");
    }
    let log = event_log(&s).await;
    assert_eq!(
        ids(&log),
        [
            "1:pending",
            "2:revoked",
            "1:issued",
            "1:pending:1",
            "1:issued:1",
            "1:pending:2"
        ]
    );
    for sink in &sinks {
        assert_eq!(stats(&s, sink).await.pending, 6, "{}", sink.name);
    }
}

pub async fn redeliver_names_one_return_exactly(s: SharedStore) {
    let a = rows("a", None);
    for (i, status) in ["pending", "needs_approval", "pending"]
        .into_iter()
        .enumerate()
    {
        let t = at(i as i64);
        window(&s, &[change(1, status)], t, t, std::slice::from_ref(&a)).await;
    }
    let all = due(&s, &a, i64::MAX, 10).await;
    delivered(&s, "a", &all, 1).await;
    let all = due(&s, &a, i64::MAX, 10).await;
    delivered(&s, "a", &all, 2).await;
    let all = due(&s, &a, i64::MAX, 10).await;
    delivered(&s, "a", &all, 3).await;
    assert_eq!(stats(&s, &a).await.pending, 0);
    let again = Redeliver::Event(parse_event_id("1:pending:1").unwrap());
    assert_eq!(s.redeliver(&a, &again, 10).await.unwrap(), 1);
    let queued = due(&s, &a, i64::MAX, 10).await;
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].transition.event_id(), "1:pending:1");
    assert_eq!(
        queued[0].transition.previous_status.as_deref(),
        Some("needs_approval")
    );
}

/// One answer lists an order twice: first with another status and no
/// certificate, then with that status and a new certificate. The first
/// sighting keeps the certificate the store knows, so the second is a
/// transition (a reissue), not the order's first certificate.
pub async fn a_sighting_without_a_certificate_keeps_the_known_one_within_a_chunk(s: SharedStore) {
    let sinks = [rows("a", None)];
    window(
        &s,
        &[with_certificate(7, "issued", Some(10))],
        at(0),
        at(0),
        &sinks,
    )
    .await;
    let twice = [
        with_certificate(7, "pending", None),
        with_certificate(7, "pending", Some(11)),
    ];
    // Sorted by order id, the two keep their answer order (a stable sort).
    let summary = window(&s, &twice, at(1), at(1), &sinks).await;
    assert_eq!(summary.new_transitions(), 2, "{summary:?}");
    let ids: Vec<String> = event_log(&s).await.into_iter().map(|e| e.0).collect();
    assert_eq!(ids, ["7:issued", "7:pending", "7:pending:1"]);
}
