//! The running NATS sink: one connection, made by the first delivery (so
//! `check` and a start with the server down connect to nothing), and
//! publishes whose acks are awaited together.
//!
//! A `deliver` call publishes its whole batch, then awaits every ack: with
//! the loop running several calls at once, up to `max_in_flight` publishes
//! await their acks. A batch never holds two events of one order (the
//! store hands out only the oldest pending event of each order), so each
//! entry's outcome stands alone: when one publish fails and a later one of
//! another order succeeds, the first is retried and the second is done,
//! and the failed order's next events wait for it.
//!
//! Once connected, the client reconnects by itself after the server goes
//! away; meanwhile deliveries fail at once ("not connected"), so nothing is
//! buffered to be sent behind the loop's back.

use std::time::{Duration, Instant};

use async_nats::jetstream::context::{GetStreamByNameErrorKind, PublishError, PublishErrorKind};
use async_nats::jetstream::publish::PublishAck;
use async_nats::{ConnectOptions, Event, ServerAddr, jetstream};
use async_trait::async_trait;

use super::outcome::{ACK_TIMEOUT, Hints, connect_outcome, error_of, publish_outcome};
use super::subject::{SubjectTemplate, headers};
use crate::config::secret::Secret;
use crate::event::EventWriter;
use crate::http::error_chain;
use crate::sink::kind::{Batch, BuildContext, Message, Outcome, Sent, Sink};

/// How long connecting to one server may take (TCP, TLS, handshake).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// After a failed connect, concurrent deliveries get the same answer for
/// this long instead of each trying again.
const CONNECT_FAILURE_MEMORY: Duration = Duration::from_secs(1);
/// Events per `deliver` call at most. Each call costs the loop a task, a
/// ledger transaction and a read of what is due, so larger calls publish
/// faster (on 2 cores under load, 256 in flight as 4 x 64 made about
/// 16-24k acked publishes/s, as 2 x 128 about 21-39k/s); two calls rather
/// than one keep publishes flowing while the loop records the other's
/// outcomes. `cargo bench -p orderwatch-bench -- --only nats` measures it.
const BATCH: usize = 128;
/// What `{status}` becomes for a message without one (`orderwatch
/// test-sink`'s test event), and `{order_id}` is 0: the test lands where
/// events do, under a status no order has.
const TEST_STATUS: &str = "test";

/// The secret a sink logs in with, read at build time.
pub(super) enum Login {
    None,
    Token(Secret),
    User(String, Secret),
    Credentials(Secret),
}

#[derive(Clone)]
struct Connection {
    client: async_nats::Client,
    js: jetstream::Context,
}

enum Link {
    Down,
    Failed(Instant, Outcome),
    Up(Box<Connection>),
}

pub(super) struct NatsSink {
    name: String,
    servers: Vec<ServerAddr>,
    subject: SubjectTemplate,
    login: Login,
    source: String,
    hints: Hints,
    max_in_flight: usize,
    link: tokio::sync::Mutex<Link>,
}

impl NatsSink {
    pub(super) fn new(
        ctx: &BuildContext<'_>,
        servers: Vec<ServerAddr>,
        shown: String,
        subject: SubjectTemplate,
        login: Login,
        auth: String,
        max_in_flight: usize,
    ) -> NatsSink {
        // TLS (tls://, or a server that requires it) uses rustls with the
        // provider the rest of orderwatch installs.
        crate::http::install_crypto_provider();
        NatsSink {
            name: ctx.name.to_string(),
            hints: Hints {
                servers: shown,
                auth,
                filter: subject.filter(),
                give_up_after: ctx.give_up_after,
            },
            servers,
            subject,
            login,
            source: ctx.source.to_string(),
            max_in_flight,
            link: tokio::sync::Mutex::new(Link::Down),
        }
    }

    fn options(&self) -> Result<ConnectOptions, Outcome> {
        let (name, servers) = (self.name.clone(), self.hints.servers.clone());
        let options = ConnectOptions::new()
            .name(format!("orderwatch sink {}", self.name))
            .connection_timeout(CONNECT_TIMEOUT)
            .event_callback(move |event| {
                let (name, servers) = (name.clone(), servers.clone());
                async move { log_event(&name, &servers, event) }
            });
        Ok(match &self.login {
            Login::None => options,
            Login::Token(t) => options.token(t.expose().to_string()),
            Login::User(u, p) => options.user_and_password(u.clone(), p.expose().to_string()),
            // Checked at build; the error names no part of the file.
            Login::Credentials(c) => {
                options.credentials(c.expose()).map_err(|e| Outcome::Dead {
                    error: format!("the .creds file cannot be used: {e}"),
                })?
            }
        })
    }

    /// The connection, made now if there is none.
    async fn connection(&self) -> Result<Connection, Outcome> {
        let mut link = self.link.lock().await;
        match &*link {
            Link::Up(c) => return Ok(Connection::clone(c)),
            Link::Failed(at, outcome) if at.elapsed() < CONNECT_FAILURE_MEMORY => {
                return Err(outcome.clone());
            }
            _ => {}
        }
        let connected = self.options()?.connect(self.servers.clone()).await;
        let client = match connected {
            Ok(c) => c,
            Err(e) => {
                let outcome = connect_outcome(e.kind(), &error_chain(&e), &self.hints);
                *link = Link::Failed(Instant::now(), outcome.clone());
                return Err(outcome);
            }
        };
        let js = jetstream::ContextBuilder::new()
            .timeout(ACK_TIMEOUT)
            .max_ack_inflight(self.max_in_flight)
            .build(client.clone());
        let c = Connection { client, js };
        *link = Link::Up(Box::new(c.clone()));
        Ok(c)
    }

    /// The connection, if it is up now: a lost connection fails at once
    /// instead of queueing publishes for whenever the client reconnects.
    async fn connected(&self) -> Result<Connection, Outcome> {
        let conn = self.connection().await?;
        if conn.client.connection_state() != async_nats::connection::State::Connected {
            return Err(Outcome::Retry {
                error: format!(
                    "not connected to NATS at {}: the connection was lost and the client is reconnecting",
                    self.hints.servers
                ),
                retry_after: None,
            });
        }
        Ok(conn)
    }

    /// What one publish's result means for its delivery.
    fn outcome(&self, subject: &str, result: Result<PublishAck, PublishError>) -> Outcome {
        match result {
            Ok(ack) => {
                if ack.duplicate {
                    tracing::debug!(sink = %self.name, subject, stream = %ack.stream,
                        "JetStream already held this event (duplicate ack)");
                }
                Outcome::Delivered
            }
            Err(e) => publish_outcome(e.kind(), &error_chain(&e), subject, &self.hints),
        }
    }
}

/// The sink's connection events, in orderwatch's log. A failed reconnect
/// attempt (a client error, every few seconds while a server is down) is
/// only debug: the lost connection was said once, and every delivery that
/// waits for it says so in the ledger.
fn log_event(sink: &str, servers: &str, event: Event) {
    match event {
        Event::Connected => tracing::info!(sink, servers, "connected to NATS"),
        Event::Disconnected => tracing::warn!(
            sink,
            servers,
            "lost the connection to NATS; reconnecting (deliveries wait)"
        ),
        Event::LameDuckMode => {
            tracing::info!(sink, "the NATS server is shutting down (lame duck mode)")
        }
        Event::ServerError(e) => tracing::warn!(sink, error = %e, "NATS server error"),
        Event::ClientError(e) => tracing::debug!(sink, error = %e, "NATS client error"),
        Event::SlowConsumer(_) | Event::Draining | Event::Closed => {}
    }
}

#[async_trait]
impl Sink for NatsSink {
    async fn deliver(&self, batch: Batch) -> Vec<Outcome> {
        let n = batch.len();
        let conn = match self.connected().await {
            Ok(c) => c,
            Err(outcome) => return vec![outcome; n],
        };
        // Every message goes out first, then every ack is awaited.
        let mut events = EventWriter::new(&self.source);
        let mut pending = Vec::with_capacity(n);
        for e in batch.iter() {
            let t = &e.transition;
            let subject = self.subject.render(t.order_id, &t.status);
            let mut body = Vec::with_capacity(340);
            events.write(&mut body, t);
            let sent = conn
                .js
                .publish_with_headers(subject.clone(), headers(&t.event_id()), body.into())
                .await;
            pending.push(async move {
                let result = match sent {
                    Ok(ack) => ack.await,
                    Err(e) => Err(e),
                };
                self.outcome(&subject, result)
            });
        }
        futures_util::future::join_all(pending).await
    }

    /// Publishes one message the way `deliver` publishes an event, and
    /// says where JetStream stored it.
    async fn send(&self, message: &Message<'_>) -> Sent {
        let subject = self.subject.render(
            message.order_id.unwrap_or(0),
            message.status.unwrap_or(TEST_STATUS),
        );
        let published = match self.connected().await {
            Ok(conn) => {
                let body = message.body.to_vec().into();
                match conn
                    .js
                    .publish_with_headers(subject.clone(), headers(message.id), body)
                    .await
                {
                    Ok(ack) => ack.await.map_err(|e| self.outcome(&subject, Err(e))),
                    Err(e) => Err(self.outcome(&subject, Err(e))),
                }
            }
            Err(outcome) => Err(outcome),
        };
        match published {
            Ok(ack) => Sent {
                outcome: Outcome::Delivered,
                answer: format!(
                    "JetStream stored it on {subject} in stream {} as message {}{}",
                    ack.stream,
                    ack.sequence,
                    if ack.duplicate { " (a duplicate)" } else { "" }
                ),
            },
            Err(outcome) => Sent {
                answer: error_of(&outcome),
                outcome,
            },
        }
    }

    /// Connects (and authenticates), then asks JetStream which stream
    /// stores the sink's subjects; publishes nothing.
    async fn reach(&self) -> Result<Option<String>, String> {
        let conn = self.connected().await.map_err(|o| error_of(&o))?;
        let info = conn.client.server_info();
        let reached = format!(
            "connected to NATS {} at {} ({})",
            info.version, self.hints.servers, self.hints.auth
        );
        let subject = self.subject.render(1, "issued");
        match conn.js.stream_by_subject(subject.clone()).await {
            Ok(stream) => Ok(Some(format!("{reached}; stream {stream} stores {subject}"))),
            Err(e) if e.kind() == GetStreamByNameErrorKind::NotFound => Err(error_of(
                &publish_outcome(PublishErrorKind::StreamNotFound, "", &subject, &self.hints),
            )),
            // An account allowed to publish but not to list streams.
            Err(e) => Ok(Some(format!(
                "{reached}; cannot ask which stream stores {subject}: {}",
                error_chain(&e)
            ))),
        }
    }

    fn batch_size(&self) -> usize {
        split(self.max_in_flight).1
    }

    /// Calls in flight: with [`Sink::batch_size`], never more than
    /// `max_in_flight` publishes awaiting acks (JetStream's own limit is
    /// set to the same number, so it never holds a publish back).
    fn concurrency(&self) -> usize {
        split(self.max_in_flight).0
    }
}

/// `max_in_flight` as `(calls, events per call)`: calls of at most
/// [`BATCH`] events whose product is at most `max_in_flight`, so a publish
/// never waits for JetStream's own in-flight limit (the same number).
pub(super) fn split(max_in_flight: usize) -> (usize, usize) {
    let calls = max_in_flight.div_ceil(BATCH).max(1);
    (calls, (max_in_flight / calls).max(1))
}
