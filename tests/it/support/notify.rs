//! A stand-in for systemd's notification socket (`$NOTIFY_SOCKET`), to see
//! what a daemon tells systemd: READY, WATCHDOG, STATUS lines, STOPPING.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A stand-in for systemd's notification socket: every datagram received,
/// split into `KEY=value` lines, with what `on_ready` saw when READY=1 came.
pub struct NotifySocket {
    pub path: PathBuf,
    lines: Arc<Mutex<Vec<String>>>,
    /// What `on_ready` said at each READY=1.
    pub at_ready: Arc<Mutex<Vec<bool>>>,
}

impl NotifySocket {
    /// Binds `path`; `on_ready` runs the moment READY=1 arrives.
    pub fn bind(path: &Path, on_ready: impl Fn() -> bool + Send + 'static) -> NotifySocket {
        let path = path.to_path_buf();
        let socket = UnixDatagram::bind(&path).expect("bind notify socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let at_ready = Arc::new(Mutex::new(Vec::new()));
        let (l, r) = (Arc::clone(&lines), Arc::clone(&at_ready));
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            // Ends when the test (and with it `lines`) is gone.
            while Arc::strong_count(&l) > 1 {
                let Ok(n) = socket.recv(&mut buf) else {
                    continue;
                };
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                if msg.lines().any(|m| m == "READY=1") {
                    r.lock().unwrap().push(on_ready());
                }
                l.lock().unwrap().extend(msg.lines().map(str::to_string));
            }
        });
        NotifySocket {
            path,
            lines,
            at_ready,
        }
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    pub fn count(&self, line: &str) -> usize {
        self.lines().iter().filter(|l| *l == line).count()
    }

    pub fn statuses(&self) -> Vec<String> {
        self.lines()
            .into_iter()
            .filter_map(|l| l.strip_prefix("STATUS=").map(str::to_string))
            .collect()
    }
}
