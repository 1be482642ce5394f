//! High availability on PostgreSQL, with real `orderwatch run` processes
//! on one database (issue 12): exactly one node leads, a standby takes over
//! within `[store] failover` when the leader is SIGKILLed (during polls and
//! during deliveries) or paused, and across every failover each transition
//! is recorded once and reaches every sink at least once, duplicates being
//! only what the dead leader had in flight. A leader paused past
//! `failover` wakes up fenced: it commits nothing and stands by. A database
//! restart under a running pair loses nothing and stops no process.
//!
//! The simulator keeps changing orders throughout (`support/ha.rs`); the
//! webhook receiver tells the processes apart by the `run=N` tag in their
//! URLs, and each process writes its own events file (`support/cluster.rs`).

use std::time::{Duration, Instant};

use crate::support::cluster::{Cluster, use_postgres};
use crate::support::ha::{
    CONCURRENCY, Churn, digest, everything_arrives_once_in_the_store,
    file_duplicates_were_in_flight, webhook_duplicates_were_in_flight, world,
};
use crate::support::notify::NotifySocket;
use crate::support::receiver::{Receiver, Reply};
use crate::support::silent::SilentProxy;
use crate::support::{World, eventually, free_port, text};
use crate::testdb;

/// SIGKILLs the leader `kills` times among `nodes` nodes, alternately just
/// as it polls and while its webhook deliveries are in flight, starting a
/// new node after each kill. Returns the takeover times.
async fn kill_leaders(nodes: usize, kills: usize) -> Option<Vec<Duration>> {
    let failover = Duration::from_secs(3);
    let db = testdb::database("failover after SIGKILL").await?;
    let rx = Receiver::start().await;
    // Each request is taken (recorded) at once and answered 50 ms later.
    rx.set_default(Reply::AcceptThenStall(Duration::from_millis(50)));
    let mut w = world(&rx, &db, "3s").await;
    let mut c = Cluster::new(Some(rx.url()));
    let notify: Vec<NotifySocket> = (0..2)
        .map(|i| NotifySocket::bind(&w.path(&format!("notify-{i}.sock")), || true))
        .collect();
    for i in 0..nodes {
        let socket = notify.get(i).map(|n| n.path.clone());
        c.start_with(&mut w, |cmd| {
            if let Some(path) = socket {
                cmd.env("NOTIFY_SOCKET", path);
            }
        });
    }
    let churn = Churn::start(
        w.sim.sim().clone(),
        Duration::from_millis(150),
        Duration::from_secs(8),
    );
    let mut leader = c.settled(Duration::from_secs(30)).await;
    status_lines_name_the_roles(&c, &notify, leader).await;
    let mut took = Vec::new();
    let mut in_flight_kills = 0;
    for k in 0..kills {
        // The new leader works a while (the new standby joins meanwhile).
        tokio::time::sleep(Duration::from_millis(400 + 300 * (k as u64 % 3))).await;
        if k % 2 == 0 {
            let polls = w.sim.queries().len();
            assert!(eventually(Duration::from_secs(10), || w.sim.queries().len() > polls).await);
        } else {
            // Kill just after a request of the leader arrived: the receiver
            // answers it 50 ms later, so it is in flight at the kill.
            let tag = Some(format!("run={leader}"));
            let fresh = |rx: &Receiver| {
                rx.deliveries()
                    .iter()
                    .any(|d| d.query == tag && d.arrived.elapsed() < Duration::from_millis(20))
            };
            assert!(
                eventually(Duration::from_secs(10), || fresh(&rx)).await,
                "{}",
                c.logs()
            );
        }
        let at = c.kill(leader);
        if k % 2 == 1 {
            let tag = Some(format!("run={leader}"));
            let unanswered = rx.deliveries().iter().any(|d| {
                d.query == tag
                    && at.saturating_duration_since(d.arrived) < Duration::from_millis(50)
            });
            assert!(
                unanswered,
                "kill {k} landed with no delivery of run {leader} in flight"
            );
            in_flight_kills += 1;
        }
        let (next, after) = c.takeover(at, failover * 3).await;
        assert!(
            after < failover,
            "took over {after:?} after the kill:\n{}",
            c.logs()
        );
        c.runs[next]
            .daemon
            .wait_for_log("leading: polling and delivering")
            .await;
        took.push(after);
        c.start(&mut w);
        leader = c.settled(Duration::from_secs(30)).await;
        assert_eq!(leader, next);
    }
    assert_eq!(in_flight_kills, kills / 2, "every other kill mid-delivery");
    let made = churn.finish().await;
    everything_arrives_once_in_the_store(&w, &rx, &c, &made).await;
    let ended: Vec<usize> = c.runs.iter().filter(|r| r.killed).map(|r| r.id).collect();
    let at_hook = webhook_duplicates_were_in_flight(&rx, &ended);
    let in_files = file_duplicates_were_in_flight(&c, &ended);
    eprintln!(
        "{nodes} nodes, {kills} kills: {} transitions, takeovers {took:?}, duplicates: {at_hook} at the webhook, {in_files} in files",
        made.len()
    );
    // A clean stop hands over at once; every node exits 0.
    let at = Instant::now();
    let status = c.runs[leader].daemon.terminate(Duration::from_secs(15));
    assert!(status.success(), "{}", c.logs());
    c.runs[leader].killed = true;
    let (_, after) = c.takeover(at, failover * 3).await;
    assert!(after < failover, "{after:?}");
    for r in c.runs.iter_mut().filter(|r| !r.killed) {
        assert!(r.daemon.terminate(Duration::from_secs(15)).success());
    }
    Some(took)
}

/// `STATUS=` of the first two nodes: the leader says it leads and what it
/// does, the standby names the leader.
async fn status_lines_name_the_roles(c: &Cluster, notify: &[NotifySocket], leader: usize) {
    let Some((_, health)) = c.runs[leader].health() else {
        panic!("the leader does not answer /healthz");
    };
    let node = health["node"].as_str().unwrap_or_default().to_string();
    for (i, socket) in notify.iter().enumerate() {
        let needle = if i == leader {
            "leader (term ".to_string()
        } else {
            format!("standby, leader is {node}")
        };
        let shown = eventually(Duration::from_secs(20), || {
            socket.statuses().iter().any(|s| s.contains(&needle))
        })
        .await;
        assert!(
            shown,
            "run {i} never said {needle:?}: {:?}",
            socket.statuses()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_survive_sigkills_of_the_leader_during_polls_and_deliveries() {
    kill_leaders(2, 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_survive_sigkills_of_the_leader_during_polls_and_deliveries() {
    kill_leaders(3, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_paused_past_failover_is_fenced_commits_nothing_and_stands_by() {
    let Some(db) = testdb::database("failover after SIGSTOP").await else {
        return;
    };
    // A long failover: the old leader must have time to wake up, notice and
    // stand by while the new one is paused too (before its lease runs out).
    let failover = Duration::from_secs(9);
    let rx = Receiver::start().await;
    let mut w = world(&rx, &db, "9s").await;
    let mut c = Cluster::new(Some(rx.url()));
    c.start(&mut w);
    c.start(&mut w);
    let churn = Churn::start(
        w.sim.sim().clone(),
        Duration::from_millis(100),
        Duration::from_secs(15),
    );
    let old = c.settled(Duration::from_secs(30)).await;
    let sent = |rx: &Receiver, run: usize| {
        let tag = Some(format!("run={run}"));
        rx.deliveries().iter().filter(|d| d.query == tag).count()
    };
    // Stopped with deliveries in flight: the receiver takes them and
    // answers while the old leader cannot read the answers.
    rx.set_default(Reply::AcceptThenStall(Duration::from_millis(500)));
    let before = sent(&rx, old);
    assert!(
        eventually(Duration::from_secs(20), || sent(&rx, old) > before).await,
        "{}",
        c.logs()
    );
    c.pause(old);
    let stopped = Instant::now();
    rx.set_default(Reply::Status(200));
    let (new, after) = c.takeover(stopped, failover * 2).await;
    assert!(
        after < failover,
        "took over {after:?} after SIGSTOP:\n{}",
        c.logs()
    );
    let delivered = sent(&rx, new);
    assert!(
        eventually(Duration::from_secs(20), || sent(&rx, new) > delivered + 5).await,
        "{}",
        c.logs()
    );

    // Freeze the new leader too: from now on only the old one could write.
    c.pause(new);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let frozen = digest(&db).await;
    c.resume(old);
    let standing_by = eventually(Duration::from_secs(4), || {
        c.runs[old].role().as_deref() == Some("standby")
    })
    .await;
    assert!(
        standing_by,
        "the old leader did not stand by:\n{}",
        c.logs()
    );
    assert_eq!(
        digest(&db).await,
        frozen,
        "the old leader committed after the takeover:\n{}",
        c.logs()
    );
    let log = c.runs[old].daemon.log_text();
    assert!(log.contains("fenced: this node no longer leads"), "{log}");
    assert!(log.contains("commits nothing after the takeover"), "{log}");

    // Both carry on: whichever leads now, nothing is lost or recorded twice.
    c.resume(new);
    c.settled(Duration::from_secs(30)).await;
    let made = churn.finish().await;
    everything_arrives_once_in_the_store(&w, &rx, &c, &made).await;
    let dups = webhook_duplicates_were_in_flight(&rx, &[old, new]);
    eprintln!(
        "SIGSTOP: took over after {after:?}; {} transitions, {dups} duplicates",
        made.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_restarted_under_a_running_pair_loses_nothing_and_stops_no_node() {
    let Some(server) = testdb::private_server("PostgreSQL restart") else {
        return;
    };
    let db = server.database().await;
    let rx = Receiver::start().await;
    let mut w = world(&rx, &db, "3s").await;
    let mut c = Cluster::new(Some(rx.url()));
    c.start(&mut w);
    c.start(&mut w);
    let churn = Churn::start(
        w.sim.sim().clone(),
        Duration::from_millis(100),
        Duration::from_secs(10),
    );
    c.settled(Duration::from_secs(30)).await;
    assert!(eventually(Duration::from_secs(20), || rx.accepted_ids().len() > 10).await);

    server.stop();
    // Every node says it cannot reach the store, and keeps running.
    let cut_off = eventually(Duration::from_secs(10), || {
        c.alive().all(|r| {
            r.health().is_some_and(|(status, v)| {
                status == 503
                    && v["status"]
                        .as_str()
                        .is_some_and(|s| s.contains("cannot reach the store"))
            })
        })
    })
    .await;
    assert!(cut_off, "{}", c.logs());
    tokio::time::sleep(Duration::from_secs(2)).await;
    server.start_again();
    c.settled(Duration::from_secs(30)).await;
    let made = churn.finish().await;
    everything_arrives_once_in_the_store(&w, &rx, &c, &made).await;
    // The leader's term ended with the database: at most its in-flight
    // deliveries again (it may well lead the next term too).
    let dups = rx.accepted().len() - rx.accepted_ids().len();
    assert!(dups <= 2 * CONCURRENCY, "{dups} duplicates");
    for r in &mut c.runs {
        assert!(
            r.daemon.is_running(),
            "run {} exited:\n{}",
            r.id,
            r.daemon.log_text()
        );
        let log = r.daemon.log_text();
        assert!(
            log.contains("cannot reach the store") && log.contains("retry_in"),
            "{log}"
        );
        assert!(!log.contains("stopping after an internal failure"), "{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_unreachable_at_start_is_an_error_naming_the_host_and_exit_1() {
    let mut w = World::new().await;
    w.file_sink();
    let port = free_port();
    w.unset("store.path").set(
        "store.url",
        format!("postgresql://orderwatch@127.0.0.1:{port}/orderwatch?sslmode=disable"),
    );
    let started = Instant::now();
    let out = w.run(&["run"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot connect to store postgresql://orderwatch@127.0.0.1:{port}/orderwatch"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("check that PostgreSQL runs there"),
        "{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(w.sim.queries().is_empty(), "polled without a store");
}

/// A standby whose database connections go silent (a NAT or a firewall
/// forgot them: no reset, no answer) still takes over when the leader
/// dies, and then works: its probe gives up on the silent connection after
/// `failover` and makes another, and its pool checks each connection
/// before handing it out, so the new leader's poller does not hang on one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_whose_connections_went_silent_takes_over_and_works() {
    let Some(db) = testdb::database("silent connections at takeover").await else {
        return;
    };
    let proxy = SilentProxy::start(db.port).await;
    let mut w = World::new().await;
    w.file_sink();
    use_postgres(&mut w, &db, "3s");
    let mut c = Cluster::new(None);
    let first = c.start(&mut w);
    assert_eq!(c.settled(Duration::from_secs(30)).await, first);
    // The second node reaches the database through the proxy.
    w.set("store.url", through(&proxy, &db));
    let standby = c.start(&mut w);
    assert_eq!(c.settled(Duration::from_secs(30)).await, first);
    // Let it make its connections (probe, pool), then silence them all.
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.silence();
    let killed = c.kill(first);
    let (leader, took) = c.takeover(killed, Duration::from_secs(30)).await;
    assert_eq!(leader, standby, "{}", c.logs());
    // It polls and delivers as leader: a change made now reaches its file.
    w.sim
        .sim()
        .set_status(777_001, 777_002, "issued", chrono::Utc::now());
    assert!(
        written(&c, standby, "777001:issued", Duration::from_secs(30)).await,
        "took over after {took:?} but delivered nothing:\n{}",
        c.logs()
    );
}

/// A leader whose connections all go silent loses its lease (it cannot
/// renew), takes it again on a new connection, and works on: its pool
/// does not hand the new term's poller a silent connection to hang on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_connections_went_silent_leads_again_and_works() {
    let Some(db) = testdb::database("silent connections under a leader").await else {
        return;
    };
    let proxy = SilentProxy::start(db.port).await;
    let mut w = World::new().await;
    w.file_sink();
    use_postgres(&mut w, &db, "3s");
    w.set("store.url", through(&proxy, &db));
    let mut c = Cluster::new(None);
    let node = c.start(&mut w);
    assert_eq!(c.settled(Duration::from_secs(30)).await, node);
    w.sim
        .sim()
        .set_status(777_001, 777_002, "pending", chrono::Utc::now());
    assert!(
        written(&c, node, "777001:pending", Duration::from_secs(30)).await,
        "{}",
        c.logs()
    );
    proxy.silence();
    w.sim
        .sim()
        .set_status(777_001, 777_002, "issued", chrono::Utc::now());
    assert!(
        written(&c, node, "777001:issued", Duration::from_secs(40)).await,
        "nothing delivered after the connections went silent:\n{}",
        c.logs()
    );
}

/// `db`'s URL, reached through `proxy`.
fn through(proxy: &SilentProxy, db: &testdb::TestDb) -> String {
    let direct = format!("127.0.0.1:{}/", db.port);
    db.url
        .replace(&direct, &format!("127.0.0.1:{}/", proxy.port))
}

/// Whether event `id` reaches run `run`'s events file within `within`.
async fn written(c: &Cluster, run: usize, id: &str, within: Duration) -> bool {
    eventually(within, || c.runs[run].file_ids().iter().any(|i| i == id)).await
}
