//! [`SilentProxy`]: a TCP proxy on loopback whose connections can be made
//! to go silent at once, as when a NAT or a firewall between a node and its
//! database forgets them: nothing is refused or closed, nothing answers.
//! Connections opened afterwards are forwarded again (the route is back).

use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct SilentProxy {
    pub port: u16,
    /// How many times connections were silenced; a connection opened at
    /// generation g is silent once this is above g.
    silenced: watch::Sender<u64>,
    accept: tokio::task::JoinHandle<()>,
}

/// Silenced connections, kept open (dropping them would close them).
type Held = Arc<Mutex<Vec<(TcpStream, TcpStream)>>>;

impl SilentProxy {
    /// Forwards `127.0.0.1:<port>` to `127.0.0.1:<upstream>`.
    pub async fn start(upstream: u16) -> SilentProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (silenced, generation) = watch::channel(0u64);
        let held: Held = Arc::default();
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                    continue;
                };
                let mut watch = generation.clone();
                let born = *watch.borrow();
                let held = Arc::clone(&held);
                tokio::spawn(async move {
                    let silenced = tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => false,
                        _ = watch.wait_for(|g| *g > born) => true,
                    };
                    if silenced {
                        held.lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push((client, server));
                    }
                });
            }
        });
        SilentProxy {
            port,
            silenced,
            accept,
        }
    }

    /// Every connection open now stops forwarding, in both directions.
    pub fn silence(&self) {
        self.silenced.send_modify(|g| *g += 1);
    }
}

impl Drop for SilentProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}
