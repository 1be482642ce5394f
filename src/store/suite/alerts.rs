//! The store's behaviour for operational events (alerts), run against
//! every backend by `store_suite!` like the rest of the suite.

use super::*;
use crate::store::alert::{DELIVERY_DEAD, POLL_FAILED, POLL_RECOVERED, SINK_PAUSED};

/// An operational sink.
fn ops(name: &str) -> SinkRoute {
    SinkRoute {
        operational: true,
        ..rows(name, None)
    }
}

async fn alerts(s: &SharedStore, sink: &str) -> Vec<AlertEntry> {
    s.alerts_due(sink, i64::MAX, 100).await.unwrap()
}

fn dead(error: &str) -> Mark {
    Mark::Dead {
        error: error.into(),
    }
}

pub async fn a_dead_delivery_alerts_every_operational_sink_but_its_own_once(s: SharedStore) {
    let a = rows("a", None);
    s.set_alert_sinks(&["ops".into(), "a".into()])
        .await
        .unwrap();
    window(
        &s,
        &[change(1, "issued")],
        at(0),
        at(0),
        std::slice::from_ref(&a),
    )
    .await;
    let entry = due(&s, &a, i64::MAX, 10).await.remove(0);
    s.mark("a", vec![(entry.seq(), dead("HTTP 400: no"))], T0)
        .await
        .unwrap();
    // Marking it dead again changes nothing, so says nothing.
    s.mark("a", vec![(entry.seq(), dead("HTTP 400: no"))], T0 + 1)
        .await
        .unwrap();
    let got = alerts(&s, "ops").await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].id, "ow:dead:a:1:issued:1");
    assert_eq!(got[0].kind, DELIVERY_DEAD);
    assert_eq!(got[0].created_at, T0);
    let data: serde_json::Value = serde_json::from_str(&got[0].data).unwrap();
    assert_eq!(data["sink"], "a");
    assert_eq!(data["event_id"], "1:issued");
    assert_eq!(data["error"], "HTTP 400: no");
    assert_eq!(data["attempts"], 1);
    assert!(
        alerts(&s, "a").await.is_empty(),
        "never to the sink it is about"
    );
    // Redelivered and dead again: a second occurrence, a second id.
    s.redeliver(&a, &Redeliver::Dead, T0 + 2).await.unwrap();
    let again = due(&s, &a, i64::MAX, 10).await.remove(0);
    s.mark("a", vec![(again.seq(), dead("HTTP 400"))], T0 + 3)
        .await
        .unwrap();
    let ids: Vec<String> = alerts(&s, "ops").await.into_iter().map(|a| a.id).collect();
    assert_eq!(ids, ["ow:dead:a:1:issued:1", "ow:dead:a:1:issued:2"]);
}

pub async fn given_up_deliveries_and_a_new_pause_each_alert_once(s: SharedStore) {
    let a = rows("a", None);
    s.set_alert_sinks(&["ops".into()]).await.unwrap();
    let two = [change(1, "issued"), change(2, "issued")];
    window(&s, &two, at(0), at(0), std::slice::from_ref(&a)).await;
    // Only deliveries that failed are given up for their age.
    let failed: Vec<(i64, Mark)> = due(&s, &a, i64::MAX, 10)
        .await
        .iter()
        .map(|e| {
            let retry = Mark::Retry {
                next_attempt_at: T0 + 1_000,
                error: "HTTP 503".into(),
            };
            (e.seq(), retry)
        })
        .collect();
    assert_eq!(failed.len(), 2);
    s.mark("a", failed, T0).await.unwrap();
    assert_eq!(s.expire("a", i64::MAX, "gave up", T0).await.unwrap(), 2);
    let got = alerts(&s, "ops").await;
    let events: Vec<&str> = got.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(events, ["ow:dead:a:1:issued:1", "ow:dead:a:2:issued:1"]);
    assert!(got[0].data.contains("gave up"), "{}", got[0].data);
    s.pause("a", "event 1:issued: HTTP 410", T0).await.unwrap();
    s.pause("a", "event 2:issued: HTTP 410", T0 + 1)
        .await
        .unwrap();
    // An operational sink's own pause is not an alert.
    s.pause("ops", "HTTP 410", T0).await.unwrap();
    let paused: Vec<AlertEntry> = alerts(&s, "ops")
        .await
        .into_iter()
        .filter(|a| a.kind == SINK_PAUSED)
        .collect();
    assert_eq!(paused.len(), 1, "{paused:?}");
    assert_eq!(paused[0].id, "ow:paused:a:1");
    assert!(paused[0].data.contains("HTTP 410"));
}

pub async fn alert_deliveries_retry_die_quietly_and_can_be_redelivered(s: SharedStore) {
    let a = rows("a", None);
    let o = ops("ops");
    s.set_alert_sinks(&["ops".into()]).await.unwrap();
    s.pause("a", "gone", T0).await.unwrap();
    let seq = alerts(&s, "ops").await[0].seq;
    let retry = Mark::Retry {
        next_attempt_at: T0 + 1_000,
        error: "HTTP 503".into(),
    };
    s.mark_alerts("ops", vec![(seq, retry)], T0).await.unwrap();
    assert!(s.alerts_due("ops", T0 + 999, 10).await.unwrap().is_empty());
    assert_eq!(s.next_alert_due("ops").await.unwrap(), Some(T0 + 1_000));
    let entry = s.alerts_due("ops", T0 + 1_000, 10).await.unwrap().remove(0);
    assert_eq!((entry.attempts, entry.first_failure_at), (1, Some(T0)));
    s.mark_alerts("ops", vec![(seq, dead("HTTP 400"))], T0 + 1_000)
        .await
        .unwrap();
    assert_eq!(s.next_alert_due("ops").await.unwrap(), None);
    let st = s
        .sink_stats(std::slice::from_ref(&o))
        .await
        .unwrap()
        .remove(0);
    assert_eq!((st.pending, st.dead), (0, 1));
    // The dead alert delivery is in the ledger under its id; no alert about it.
    let filter = DeliveryFilter {
        sink: Some("ops".into()),
        state: None,
        limit: 10,
        routes: vec![o.clone()],
    };
    let ledger = s.deliveries(&filter).await.unwrap();
    assert_eq!(ledger.len(), 1, "{ledger:?}");
    assert_eq!(ledger[0].event_id(), "ow:paused:a:1");
    assert_eq!(ledger[0].state, DeliveryState::Dead);
    assert_eq!(ledger[0].last_error.as_deref(), Some("HTTP 400"));
    let filter_a = DeliveryFilter {
        sink: Some("a".into()),
        routes: vec![a.clone()],
        ..filter.clone()
    };
    assert!(s.deliveries(&filter_a).await.unwrap().is_empty());
    // Redeliver --dead, then --event with the alert's id.
    assert_eq!(
        s.redeliver(&o, &Redeliver::Dead, T0 + 2_000).await.unwrap(),
        1
    );
    assert_eq!(s.alerts_due("ops", T0 + 2_000, 10).await.unwrap().len(), 1);
    s.mark_alerts("ops", vec![(seq, Mark::Delivered)], T0 + 2_000)
        .await
        .unwrap();
    let by_id = Redeliver::Alert("ow:paused:a:1".into());
    assert_eq!(s.redeliver(&o, &by_id, T0 + 3_000).await.unwrap(), 1);
    let unknown = Redeliver::Alert("ow:paused:zzz:1".into());
    assert_eq!(s.redeliver(&o, &unknown, T0 + 3_000).await.unwrap(), 0);
    s.mark_alerts("ops", vec![(seq, Mark::Delivered)], T0 + 3_000)
        .await
        .unwrap();
    // Retention forgets delivered alert deliveries, like the outbox's.
    assert_eq!(s.prune_delivered(T0 + 10_000, 100).await.unwrap(), 1);
    assert!(s.deliveries(&filter).await.unwrap().is_empty());
}

pub async fn a_poll_outage_is_reported_once_and_its_end_once(s: SharedStore) {
    s.set_alert_sinks(&["ops".into()]).await.unwrap();
    let failing = |n| PollHealth::Failing {
        failures: n,
        since: T0,
        error: "HTTP 503".into(),
    };
    let back = PollHealth::Recovered { failures: 4 };
    assert_eq!(s.poll_health(&back, T0).await.unwrap(), None);
    let first = s.poll_health(&failing(3), T0 + 1).await.unwrap();
    assert_eq!(first.as_deref(), Some("ow:poll-failed:1"));
    // A restart that counts again does not report the same outage twice.
    assert_eq!(s.poll_health(&failing(3), T0 + 2).await.unwrap(), None);
    let end = s.poll_health(&back, T0 + 3).await.unwrap();
    assert_eq!(end.as_deref(), Some("ow:poll-recovered:1"));
    assert_eq!(s.poll_health(&back, T0 + 4).await.unwrap(), None);
    let next = s.poll_health(&failing(5), T0 + 5).await.unwrap();
    assert_eq!(next.as_deref(), Some("ow:poll-failed:2"));
    let got = alerts(&s, "ops").await;
    let kinds: Vec<&str> = got.iter().map(|a| a.kind.as_str()).collect();
    assert_eq!(kinds, [POLL_FAILED, POLL_RECOVERED, POLL_FAILED]);
    assert!(got.iter().all(|a| a.about.is_none()));
    let data: serde_json::Value = serde_json::from_str(&got[1].data).unwrap();
    assert_eq!(data["outage"], "ow:poll-failed:1");
    // A list replaced: a sink no longer operational gets nothing new.
    s.set_alert_sinks(&["other".into()]).await.unwrap();
    s.poll_health(&back, T0 + 6).await.unwrap();
    assert_eq!(alerts(&s, "ops").await.len(), 3);
    assert_eq!(alerts(&s, "other").await.len(), 1);
}
