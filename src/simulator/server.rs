//! Serving the simulator: the listener that keeps a kill switch for every
//! connection, `serve`/`start`, and the handle tests hold.
//!
//! Why a custom listener: a hung request (the `Hang` fault) must end with the
//! connection closed and *no* response bytes, and stopping the server must
//! not wait for hung or dripping answers. axum cannot drop a connection from
//! inside a handler, so every accepted socket keeps a duplicate descriptor
//! whose `shutdown` closes the connection from outside.

use std::future::Future;
use std::net::{Ipv4Addr, Shutdown, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::tls::{SimStream, TlsIdentity};
use super::{Simulator, schedule};

/// How long in-flight answers get to finish after shutdown is requested
/// before their connections are closed.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(300);

/// The kill switch of one accepted connection.
#[derive(Debug)]
struct ConnControl {
    socket: std::net::TcpStream,
    killed: watch::Sender<bool>,
}

/// Identifies the connection a request arrived on (as axum `ConnectInfo`),
/// so a handler can close it.
#[derive(Debug, Clone)]
pub(crate) struct ConnTag {
    remote: SocketAddr,
    control: Option<Arc<ConnControl>>,
}

impl ConnTag {
    /// Closes the connection in both directions; hyper's next read or write
    /// on it fails and it drops the connection.
    pub(crate) fn kill(&self) {
        if let Some(c) = &self.control {
            tracing::debug!(remote = %self.remote, "simulator closing a connection");
            let _ = c.socket.shutdown(Shutdown::Both);
            c.killed.send_replace(true);
        }
    }

    /// Resolves once the connection was killed (never, without a control).
    pub(crate) async fn killed(&self) {
        match &self.control {
            Some(c) => {
                let mut rx = c.killed.subscribe();
                let _ = rx.wait_for(|k| *k).await;
            }
            None => std::future::pending().await,
        }
    }
}

impl Connected<IncomingStream<'_, SimListener>> for ConnTag {
    fn connect_info(stream: IncomingStream<'_, SimListener>) -> Self {
        stream.remote_addr().clone()
    }
}

/// Connections accepted by one `serve` call.
#[derive(Debug, Default)]
struct Registry {
    conns: Mutex<Vec<Weak<ConnControl>>>,
    closed: AtomicBool,
}

impl Registry {
    fn register(&self, control: &Arc<ConnControl>) {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        if conns.len() >= 64 {
            conns.retain(|w| w.strong_count() > 0);
        }
        conns.push(Arc::downgrade(control));
        drop(conns);
        if self.closed.load(Ordering::SeqCst) {
            let _ = control.socket.shutdown(Shutdown::Both);
            control.killed.send_replace(true);
        }
    }

    fn kill_all(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let conns = std::mem::take(&mut *self.conns.lock().unwrap_or_else(|e| e.into_inner()));
        for control in conns.iter().filter_map(Weak::upgrade) {
            let _ = control.socket.shutdown(Shutdown::Both);
            control.killed.send_replace(true);
        }
    }
}

/// A TCP listener whose connections can be closed from outside, speaking
/// TLS on them when given an identity.
pub(crate) struct SimListener {
    inner: TcpListener,
    registry: Arc<Registry>,
    tls: Option<TlsIdentity>,
}

/// Keeps a duplicate of the socket's descriptor as its kill switch.
fn with_control(stream: TcpStream) -> std::io::Result<(TcpStream, std::net::TcpStream)> {
    let std_stream = stream.into_std()?;
    let control = std_stream.try_clone()?;
    std_stream.set_nonblocking(true)?;
    let stream = TcpStream::from_std(std_stream)?;
    // Byte-at-a-time answers (`SlowBody`) must not be batched by Nagle.
    let _ = stream.set_nodelay(true);
    Ok((stream, control))
}

impl Listener for SimListener {
    type Io = SimStream;
    type Addr = ConnTag;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, remote)) => match with_control(stream) {
                    Ok((stream, socket)) => {
                        let stream = match &self.tls {
                            None => SimStream::Plain(stream),
                            Some(tls) => match tls.accept(stream).await {
                                Ok(s) => SimStream::Tls(Box::new(s)),
                                // A client that refuses the certificate ends here.
                                Err(e) => {
                                    tracing::debug!(error = %e, %remote, "simulator TLS handshake failed");
                                    continue;
                                }
                            },
                        };
                        let (killed, _) = watch::channel(false);
                        let control = Arc::new(ConnControl { socket, killed });
                        self.registry.register(&control);
                        let tag = ConnTag {
                            remote,
                            control: Some(control),
                        };
                        return (stream, tag);
                    }
                    Err(e) => tracing::debug!(error = %e, "simulator dropped a connection"),
                },
                // Per-connection errors: the next accept works.
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionRefused
                            | std::io::ErrorKind::ConnectionAborted
                            | std::io::ErrorKind::ConnectionReset
                    ) => {}
                // Typically out of file descriptors: back off like axum does.
                Err(e) => {
                    tracing::warn!(error = %e, "simulator accept failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(ConnTag {
            remote: self.inner.local_addr()?,
            control: None,
        })
    }
}

/// Aborts the background schedule when `serve` ends, however it ends.
struct AbortOnDrop(Option<JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(task) = &self.0 {
            task.abort();
        }
    }
}

impl Simulator {
    /// Serves both endpoints on `listener` until `shutdown` resolves, running
    /// the random schedule (`rate_per_min`) meanwhile. On shutdown, answers in
    /// flight get a short grace period; then hung and dripping connections
    /// are closed so this returns promptly. Each concurrent `serve` call on
    /// the same simulator runs its own schedule, so serve it once.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let registry = Arc::new(Registry::default());
        let cfg = self.config();
        let _schedule = AbortOnDrop(
            (cfg.rate_per_min.is_finite() && cfg.rate_per_min > 0.0)
                .then(|| tokio::spawn(schedule::run(self.clone(), cfg.rate_per_min, cfg.seed))),
        );
        let after_grace = registry.clone();
        let signal = async move {
            shutdown.await;
            tokio::spawn(async move {
                tokio::time::sleep(SHUTDOWN_GRACE).await;
                after_grace.kill_all();
            });
        };
        let listener = SimListener {
            inner: listener,
            registry: registry.clone(),
            tls: cfg.tls.clone(),
        };
        let app = self
            .router()
            .into_make_service_with_connect_info::<ConnTag>();
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(signal)
            .await;
        registry.kill_all();
        result
    }

    /// Binds `127.0.0.1:0` and serves in a background task.
    pub async fn start(cfg: super::SimulatorConfig) -> std::io::Result<SimulatorHandle> {
        Simulator::new(cfg).spawn().await
    }

    /// Serves this simulator on `127.0.0.1:0` in a background task — for
    /// tests that load the account (e.g. `bulk_insert`) before serving.
    pub async fn spawn(&self) -> std::io::Result<SimulatorHandle> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let sim = self.clone();
        let task = tokio::spawn(async move {
            // A dropped sender resolves this too: dropping the handle stops.
            let signal = async move {
                let _ = stopped.await;
            };
            if let Err(e) = sim.serve(listener, signal).await {
                tracing::warn!(error = %e, "simulator server failed");
            }
        });
        Ok(SimulatorHandle {
            sim: self.clone(),
            addr,
            stop,
            task,
        })
    }

    /// `http://ADDR/services/v2`, or `https://` when serving TLS: the
    /// `base_url` of a simulator served on `addr`.
    pub fn base_url_at(&self, addr: SocketAddr) -> String {
        let scheme = if self.config().tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{addr}/services/v2")
    }
}

/// A simulator serving in the background. Dropping it stops the server (its
/// stop sender is dropped); [`SimulatorHandle::stop`] also waits for that.
/// Derefs to the [`Simulator`] for control and inspection.
#[derive(Debug)]
pub struct SimulatorHandle {
    sim: Simulator,
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl SimulatorHandle {
    /// Where the server listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/services/v2` (`https://` in the HTTPS
    /// mode), the `base_url` a client is configured with.
    pub fn base_url(&self) -> String {
        self.sim.base_url_at(self.addr)
    }

    /// The simulator being served (the same one `Deref` gives).
    pub fn sim(&self) -> &Simulator {
        &self.sim
    }

    /// Stops the server and waits until it has stopped.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "simulator server task failed");
        }
    }
}

impl std::ops::Deref for SimulatorHandle {
    type Target = Simulator;

    fn deref(&self) -> &Simulator {
        &self.sim
    }
}
