//! CertCentral answering what it should not, fed to the real daemon: ids of
//! the wrong type or range, missing or empty statuses, the wrong shape, an
//! error object with HTTP 200, an empty body, an HTML page, an answer over
//! `max_response_size`, a body dripping one byte a second.
//!
//! Every rejected answer fails its cycle with a log line naming the cause
//! (down to the element and field), records nothing and leaves the cursor
//! where it was; the daemon keeps polling and records the next good answer.
//! Oddities that are valid data (unknown statuses, extra fields, the same
//! order twice) are recorded as they come.

use std::time::Duration;

use crate::support::sim::Fault;
use crate::support::{World, eventually, failed_cycles, ids, text};

/// A world for hostile answers: no retries within a cycle (one fault, one
/// failed cycle), a short timeout, a small answer cap (`max_size`) and fast
/// cycles, so a long list of faults goes by in seconds.
pub(crate) async fn hostile_world(max_size: &str) -> World {
    let mut w = World::new().await;
    w.file_sink()
        .set("digicert.retries", 0)
        .set("digicert.retry_max", "300ms")
        .set("digicert.timeout", "3s")
        .set("digicert.max_response_size", max_size)
        .set("poll.interval", "1s");
    w
}

/// A [primed](World::prime) hostile world with a 4 KiB answer cap.
pub(crate) async fn primed() -> World {
    let w = hostile_world("4KiB").await;
    w.prime();
    w
}

fn json(status: u16, body: &str) -> Fault {
    Fault::Respond {
        status,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: body.to_string(),
    }
}

/// An answer that must be refused, and what the log must say about it.
struct Rejected {
    fault: Fault,
    code: &'static str,
    cause: String,
}

fn rejected(fault: Fault, code: &'static str, cause: &str) -> Rejected {
    Rejected {
        fault,
        code,
        cause: cause.to_string(),
    }
}

fn order(id: &str, cert: &str, status: &str) -> String {
    format!(r#"{{"order_id":{id},"certificate_id":{cert},"status":{status}}}"#)
}

fn orders(list: &[String]) -> String {
    format!(r#"{{"orders":[{}]}}"#, list.join(","))
}

/// Every answer shape that must fail its cycle.
fn rejected_answers() -> Vec<Rejected> {
    let good = order("5", "50", r#""pending""#);
    let one = |o: String| json(200, &orders(&[o]));
    // A valid element before the bad one: nothing of the answer is kept.
    let after_good = |o: String| json(200, &orders(&[good.clone(), o]));
    vec![
        rejected(
            one(order(r#""7""#, "70", r#""pending""#)),
            "malformed",
            r#"orders[0].order_id: expected a positive integer, got the string "7""#,
        ),
        rejected(
            after_good(order("-7", "70", r#""pending""#)),
            "malformed",
            "orders[1].order_id: expected a positive integer, got -7",
        ),
        rejected(
            one(order("0", "70", r#""pending""#)),
            "malformed",
            "orders[0].order_id: expected a positive integer, got 0",
        ),
        rejected(
            one(order("9223372036854775808", "70", r#""pending""#)),
            "malformed",
            "orders[0].order_id: expected a positive integer, got the number 9223372036854775808",
        ),
        rejected(
            one(order("7.5", "70", r#""pending""#)),
            "malformed",
            "orders[0].order_id: expected a positive integer, got the number 7.5",
        ),
        rejected(
            one(order("null", "70", r#""pending""#)),
            "malformed",
            "orders[0].order_id: expected a positive integer, got null",
        ),
        rejected(
            after_good(r#"{"certificate_id":70,"status":"pending"}"#.to_string()),
            "malformed",
            "orders[1].order_id is missing",
        ),
        rejected(
            one(order("7", r#""70""#, r#""pending""#)),
            "malformed",
            r#"orders[0] (order 7).certificate_id: expected a positive integer, got the string "70""#,
        ),
        rejected(
            one(order("7", "-70", r#""pending""#)),
            "malformed",
            "orders[0] (order 7).certificate_id: expected a positive integer, got -70",
        ),
        rejected(
            one(order("7", "18446744073709551616", r#""pending""#)),
            "malformed",
            "orders[0] (order 7).certificate_id: expected a positive integer, got the number 1.844674407370955",
        ),
        rejected(
            after_good(r#"{"order_id":7,"certificate_id":70}"#.to_string()),
            "malformed",
            "orders[1] (order 7).status is missing",
        ),
        rejected(
            one(order("7", "70", r#""""#)),
            "malformed",
            r#"orders[0] (order 7).status: expected a non-empty string, got the string """#,
        ),
        rejected(
            one(order("7", "70", r#""   ""#)),
            "malformed",
            r#"orders[0] (order 7).status: expected a non-empty string, got the string "   ""#,
        ),
        rejected(
            one(order("7", "70", "null")),
            "malformed",
            "orders[0] (order 7).status: expected a non-empty string, got null",
        ),
        rejected(
            one(order("7", "70", r#"["issued"]"#)),
            "malformed",
            "orders[0] (order 7).status: expected a non-empty string, got an array",
        ),
        rejected(
            json(200, r#"{"orders":null}"#),
            "malformed",
            r#"invalid type: null, expected "orders" to be a list of orders"#,
        ),
        rejected(
            json(200, r#"{"orders":{"order_id":7,"status":"pending"}}"#),
            "malformed",
            r#"invalid type: map, expected "orders" to be a list of orders"#,
        ),
        rejected(
            json(200, "[]"),
            "malformed",
            "invalid type: sequence, expected a JSON object",
        ),
        rejected(json(200, ""), "malformed", "empty body"),
        rejected(
            json(200, r#"{"orders":[{"order_id":7,"status":"pend"#),
            "malformed",
            "EOF while parsing",
        ),
        rejected(
            json(200, r#"{"orders":[]} {"orders":[]}"#),
            "malformed",
            "trailing characters",
        ),
        rejected(
            after_good(r#"[7,70,"pending"]"#.to_string()),
            "malformed",
            "invalid type: sequence, expected orders[1] to be an order object",
        ),
        rejected(
            one(r#"{"order_id":7,"order_id":8,"status":"pending"}"#.to_string()),
            "malformed",
            "duplicate field `order_id`",
        ),
        rejected(Fault::html(200), "malformed", "expected value at line 1"),
        rejected(
            json(
                200,
                r#"{"errors":[{"code":"access_denied","message":"Simulated: not allowed."}]}"#,
            ),
            "access_denied",
            "answered HTTP 200: access_denied: Simulated: not allowed.",
        ),
        rejected(
            json(200, &orders(&vec![good.clone(); 100])),
            "too_large",
            "is larger than max_response_size (4096 bytes)",
        ),
        // The real answer, one byte a second: the 3 s timeout covers the body.
        rejected(
            Fault::SlowBody(Duration::from_secs(1)),
            "timeout",
            "no complete answer from",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_malformed_answer_fails_its_cycle_naming_the_cause_and_the_daemon_recovers() {
    let w = primed().await;
    let before = w.cursor();
    assert!(before.is_some());
    let asked = w.sim.queries().len();
    let rows = rejected_answers();
    for r in &rows {
        w.sim.push_fault(r.fault.clone());
    }
    // Then a request that hangs: while it is outstanding no cycle can
    // commit, so the store shows exactly what the rejected answers left.
    // (The daemon is stopped meanwhile, so its timeout cannot end the
    // hang while the store is being looked at, however slow the machine.)
    w.sim.push_fault(Fault::Hang(Duration::from_secs(30)));
    let mut daemon = w.spawn_ready().await;

    let hung = eventually(Duration::from_secs(60), || {
        w.sim.queries().len() > asked + rows.len()
    })
    .await;
    let log = daemon.log_text();
    assert!(
        hung,
        "the daemon stopped asking after {} requests:\n{log}",
        w.sim.queries().len() - asked
    );
    daemon.signal("STOP");
    assert!(daemon.is_running(), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    let failed = failed_cycles(&log);
    assert_eq!(failed.len(), rows.len(), "{log}");
    for (line, r) in failed.iter().zip(&rows) {
        assert!(
            line.contains(&format!("code={}", r.code)) && line.contains(&r.cause),
            "expected code={} and {:?} in:\n{line}",
            r.code,
            r.cause
        );
    }
    assert_eq!(w.cursor(), before, "a rejected answer moved the cursor");
    assert_eq!(w.recorded_ids(), vec!["1:pending"], "{log}");
    assert_eq!(w.file_ids(), vec!["1:pending"]);
    daemon.signal("CONT");

    // The hang times out too, and the next good answer is recorded.
    let expected = vec!["1:pending", "1:issued", "2:pending"];
    let recovered = eventually(Duration::from_secs(30), || w.file_ids() == expected).await;
    let log = daemon.log_text();
    assert!(recovered, "no recovery after the faults:\n{log}");
    assert!(
        failed_cycles(&log)[rows.len()].contains("code=timeout"),
        "{log}"
    );
    assert!(w.cursor() > before);
    assert!(daemon.terminate(Duration::from_secs(20)).success());
    assert_eq!(w.recorded_ids(), expected);
    assert_eq!(w.file_ids(), expected, "delivered once each");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_statuses_extra_fields_and_an_order_twice_are_recorded_as_they_come() {
    let w = primed().await;
    let answer = r#"{"orders":[
        {"order_id":7,"certificate_id":70,"status":"pending","product":{"name_id":"ssl_plus","tags":[1,{"x":null}]},"organization":{"id":3}},
        {"order_id":7,"certificate_id":70,"status":"awaiting_quantum_validation"},
        {"order_id":8,"status":"needs_approval","deep":DEEP},
        {"order_id":9,"certificate_id":null,"status":" Reissue_Pending "}
      ],"page":null,"next_release":"soon","meta":[1,2,3]}"#;
    // Deep nesting in a field nobody reads is skipped, not recursed into.
    let deep = format!("{}0{}", "[".repeat(1000), "]".repeat(1000));
    w.sim.push_fault(json(200, &answer.replace("DEEP", &deep)));
    // An empty object means nothing changed: a good answer too.
    w.sim.push_fault(json(200, "{}"));
    let mut daemon = w.spawn_ready().await;
    let expected = vec![
        "1:pending",
        "7:pending",
        "7:awaiting_quantum_validation",
        "8:needs_approval",
        "9:reissue_pending",
        "1:issued",
        "2:pending",
    ];
    let done = eventually(Duration::from_secs(30), || {
        w.file_ids().len() >= expected.len()
    })
    .await;
    let log = daemon.log_text();
    assert!(done, "{log}");
    assert!(!log.contains("poll cycle failed"), "{log}");
    assert!(daemon.terminate(Duration::from_secs(20)).success());

    let events = w.file_events();
    assert_eq!(ids(&events), expected);
    let data =
        |id: &str| events[ids(&events).iter().position(|e| e == id).unwrap()]["data"].clone();
    assert_eq!(data("7:pending")["certificate_id"], 70);
    assert_eq!(
        data("7:pending")["previous_status"],
        serde_json::Value::Null
    );
    // The same order twice in one answer: both statuses, in answer order.
    assert_eq!(
        data("7:awaiting_quantum_validation")["previous_status"],
        "pending"
    );
    assert_eq!(
        data("7:awaiting_quantum_validation")["status"],
        "awaiting_quantum_validation"
    );
    // No certificate yet (missing or null): recorded without one.
    assert_eq!(
        data("8:needs_approval")["certificate_id"],
        serde_json::Value::Null
    );
    assert_eq!(
        data("9:reissue_pending")["certificate_id"],
        serde_json::Value::Null
    );
    assert_eq!(w.recorded_ids(), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_statuses_are_escaped_everywhere_and_cannot_forge_a_log_line() {
    let (mut w, rx) = World::with_webhook().await;
    w.file_sink();
    let forged = "evil\n2026-01-01T00:00:00Z ERROR forged line\u{1b}[31m\u{202e}é";
    let huge = "x".repeat(2_000_000);
    let answer = serde_json::json!({"orders": [
        {"order_id": 1, "certificate_id": 10, "status": forged},
        {"order_id": 2, "certificate_id": 20, "status": huge},
    ]})
    .to_string();
    w.set("digicert.max_response_size", "8MiB");
    w.sim.push_fault(json(200, &answer));
    let out = w.once();
    let log = text(&out.stderr);
    assert!(
        !log.lines()
            .any(|l| l.contains("ERROR forged line") && !l.contains("evil")),
        "a forged line:\n{log}"
    );
    assert!(
        !log.contains('\u{1b}') && !log.contains('\u{202e}'),
        "{log}"
    );
    // Lower-cased, every other byte %-escaped, long ones cut and tagged.
    let ids = w.file_ids();
    assert!(
        ids[0].starts_with("1:evil%0A2026%2D01%2D01t00%3A00"),
        "{ids:?}"
    );
    assert!(ids[1].starts_with("2:xxxx"), "{ids:?}");
    for id in &ids {
        assert_eq!(id.len(), 2 + 48 + 1 + 12, "{id}");
        assert!(id.bytes().all(|b| b.is_ascii_graphic()), "{id}");
    }
    // The webhook took both, headers and all, and they verify.
    assert_eq!(rx.accepted().len(), 2);
    for d in rx.accepted() {
        assert!(
            d.id.is_ascii() && !d.id.contains(char::is_whitespace),
            "{}",
            d.id
        );
        assert!(d.signature_ok, "{}", d.id);
    }
}
