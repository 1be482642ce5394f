//! Running the command for one event: event JSON on stdin, `ORDERWATCH_*`
//! in a cleared environment, stdout and stderr merged into one pipe of which
//! the first 4 KiB are kept, and a timeout that kills the whole process
//! group (a shell script's children included), not just its leader.
//!
//! The command runs in a process group of its own, so the group is ours to
//! kill and a Ctrl-C at orderwatch's terminal does not reach it. If the
//! delivery is abandoned half-way (shutdown after the grace period), the
//! guard kills the group as the future is dropped: no hook outlives the
//! delivery it was running for.

use std::io::Read as _;
use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

/// How much of a command's output is kept, for the log and the ledger.
pub const OUTPUT_KEPT: usize = 4 * 1024;
/// After the command exits, how long its output may still take to arrive
/// (a background child holding the pipe open is not waited for).
const DRAIN_GRACE: Duration = Duration::from_millis(200);

/// What to run and with what, for one event.
pub struct Invocation<'a> {
    pub program: &'a std::path::Path,
    pub args: &'a [String],
    /// The complete environment (the command inherits nothing else).
    pub env: Vec<(String, String)>,
    /// The event JSON, written to stdin.
    pub stdin: &'a [u8],
    pub timeout: Duration,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    Exited(ExitStatus),
    /// Still running at the timeout; its process group was killed.
    TimedOut,
    /// It could not be started.
    NotStarted(String),
}

/// One run: how it ended and what it printed.
#[derive(Debug, Clone)]
pub struct Ran {
    pub ending: Ending,
    /// The first [`OUTPUT_KEPT`] bytes of stdout and stderr, interleaved.
    pub output: Vec<u8>,
    /// Everything it printed, kept or not.
    pub output_len: u64,
}

impl Ran {
    /// The output as one printable line: control characters become spaces,
    /// and a cut is said with how much was left out.
    pub fn output_line(&self) -> String {
        let text = String::from_utf8_lossy(&self.output);
        let flat: String = text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let flat = flat.split_whitespace().collect::<Vec<_>>().join(" ");
        let left_out = self.output_len.saturating_sub(self.output.len() as u64);
        match (flat.is_empty(), left_out) {
            (true, 0) => "(no output)".to_string(),
            (_, 0) => flat,
            (_, n) => format!("{flat} … ({n} more bytes not kept)"),
        }
    }
}

/// Kills the process group when dropped while armed: a delivery abandoned
/// half-way (shutdown) takes its command with it.
struct GroupGuard(Option<i32>);

impl GroupGuard {
    fn kill(&mut self) {
        if let Some(pgid) = self.0.take() {
            // SAFETY: killpg has no memory-safety preconditions; pgid is the
            // group we created for this command (process_group(0)), whose
            // leader we have not reaped yet, so the id cannot be reused.
            unsafe {
                libc::killpg(pgid, libc::SIGKILL);
            }
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs the command once. Never fails: a command that cannot start is an
/// [`Ending::NotStarted`], for the delivery to retry.
pub async fn run(inv: &Invocation<'_>) -> Ran {
    let (reader, writer) = match std::io::pipe() {
        Ok(p) => p,
        Err(e) => return not_started(format!("cannot create a pipe for its output: {e}")),
    };
    let spawned = writer.try_clone().and_then(|err_writer| {
        let mut cmd = tokio::process::Command::new(inv.program);
        cmd.args(inv.args)
            .env_clear()
            .envs(inv.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::from(OwnedFd::from(writer)))
            .stderr(Stdio::from(OwnedFd::from(err_writer)))
            .process_group(0)
            .kill_on_drop(true);
        // `cmd` (and with it our copies of the pipe's write end) is dropped
        // here, so the pipe reaches EOF once the command's side closes.
        cmd.spawn()
    });
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => return not_started(e.to_string()),
    };
    let mut guard = GroupGuard(child.id().and_then(|id| i32::try_from(id).ok()));
    let mut output = Output::default();
    let mut pipe = match tokio::net::unix::pipe::Receiver::from_owned_fd(OwnedFd::from(reader)) {
        Ok(p) => Some(p),
        Err(e) => {
            output.push(format!("(output not read: {e})").as_bytes());
            None
        }
    };
    let stdin = child.stdin.take();
    let feed = async move {
        if let Some(mut stdin) = stdin {
            // A command that does not read its input closes the pipe: fine.
            let _ = stdin.write_all(inv.stdin).await;
            let _ = stdin.shutdown().await;
        }
    };
    tokio::pin!(feed);
    let deadline = Instant::now() + inv.timeout;
    let mut fed = false;
    let mut status: Option<ExitStatus> = None;
    let mut drain_until = deadline;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if status.is_some() && pipe.is_none() {
            break;
        }
        tokio::select! {
            () = &mut feed, if !fed => fed = true,
            read = read_some(pipe.as_mut(), &mut buf), if pipe.is_some() => match read {
                Some(n) => output.push(&buf[..n]),
                None => pipe = None,
            },
            exited = child.wait(), if status.is_none() => {
                let s = match exited {
                    Ok(s) => s,
                    // Cannot wait for our own child: treat as killed.
                    Err(_) => ExitStatus::from_raw(libc::SIGKILL),
                };
                status = Some(s);
                guard.0 = None;
                drain_until = Instant::now() + DRAIN_GRACE;
            }
            () = tokio::time::sleep_until(drain_until), if status.is_some() => break,
            () = tokio::time::sleep_until(deadline), if status.is_none() => {
                guard.kill();
                let _ = child.wait().await;
                drain_rest(pipe.take(), &mut output);
                return output.ran(Ending::TimedOut);
            }
        }
    }
    match status {
        Some(s) => output.ran(Ending::Exited(s)),
        None => output.ran(Ending::TimedOut),
    }
}

/// Reads one chunk; `None` at EOF or on an error.
async fn read_some(
    pipe: Option<&mut tokio::net::unix::pipe::Receiver>,
    buf: &mut [u8],
) -> Option<usize> {
    let pipe = pipe?;
    match pipe.read(buf).await {
        Ok(0) | Err(_) => None,
        Ok(n) => Some(n),
    }
}

/// What a killed group left in the pipe, without waiting for more.
fn drain_rest(pipe: Option<tokio::net::unix::pipe::Receiver>, output: &mut Output) {
    let Some(pipe) = pipe else { return };
    let Ok(fd) = pipe.into_nonblocking_fd() else {
        return;
    };
    let mut file = std::fs::File::from(fd);
    let mut buf = [0u8; 16 * 1024];
    while let Ok(n) = file.read(&mut buf) {
        if n == 0 {
            break;
        }
        output.push(&buf[..n]);
    }
}

fn not_started(why: String) -> Ran {
    Ran {
        ending: Ending::NotStarted(why),
        output: Vec::new(),
        output_len: 0,
    }
}

/// The output so far: the first [`OUTPUT_KEPT`] bytes and the total.
#[derive(Default)]
struct Output {
    kept: Vec<u8>,
    total: u64,
}

impl Output {
    fn push(&mut self, bytes: &[u8]) {
        self.total += bytes.len() as u64;
        let room = OUTPUT_KEPT.saturating_sub(self.kept.len());
        self.kept.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn ran(self, ending: Ending) -> Ran {
        Ran {
            ending,
            output: self.kept,
            output_len: self.total,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn sh<'a>(script: &'a [String], stdin: &'a [u8], timeout: Duration) -> Invocation<'a> {
        Invocation {
            program: Path::new("/bin/sh"),
            args: script,
            env: vec![("ORDERWATCH_EVENT_ID".into(), "7:issued".into())],
            stdin,
            timeout,
        }
    }

    #[tokio::test]
    async fn stdin_env_and_both_output_streams_reach_the_command_and_back() {
        let script = vec![
            "-c".to_string(),
            "cat; echo \" $ORDERWATCH_EVENT_ID\"; echo oops >&2; echo \"HOME=${HOME:-unset}\"; exit 3"
                .to_string(),
        ];
        let ran = run(&sh(&script, b"{\"id\":1}", Duration::from_secs(10))).await;
        assert_eq!(ran.ending, Ending::Exited(ExitStatus::from_raw(3 << 8)));
        assert_eq!(
            ran.output_line(),
            "{\"id\":1} 7:issued oops HOME=unset",
            "the environment is cleared: nothing but what we pass"
        );
    }

    #[tokio::test]
    async fn megabytes_of_output_are_drained_and_only_4_kib_kept() {
        let script = vec![
            "-c".to_string(),
            "head -c 3000000 /dev/zero | tr '\\0' x".to_string(),
        ];
        let ran = run(&sh(&script, b"", Duration::from_secs(20))).await;
        assert_eq!(ran.ending, Ending::Exited(ExitStatus::from_raw(0)));
        assert_eq!(ran.output.len(), OUTPUT_KEPT);
        assert_eq!(ran.output_len, 3_000_000);
        assert!(ran.output_line().ends_with("(2995904 more bytes not kept)"));
    }

    #[tokio::test]
    async fn a_hanging_command_is_killed_with_its_whole_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let pids = dir.path().join("pids");
        let script = vec![
            "-c".to_string(),
            format!(
                "sleep 300 & echo $! > {p}; echo started; sleep 300",
                p = pids.display()
            ),
        ];
        let started = std::time::Instant::now();
        let ran = run(&sh(&script, b"", Duration::from_millis(500))).await;
        assert_eq!(ran.ending, Ending::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(ran.output_line(), "started");
        let bg: i32 = std::fs::read_to_string(&pids)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // The background child was in the group: it is gone (or a zombie
        // about to be reaped by init), never still sleeping.
        let gone = (0..50).any(|_| {
            let state = std::fs::read_to_string(format!("/proc/{bg}/stat")).unwrap_or_default();
            let alive = state.split(' ').nth(2).is_some_and(|s| s != "Z");
            if alive {
                std::thread::sleep(Duration::from_millis(20));
            }
            !alive
        });
        assert!(gone, "the background child {bg} survived the timeout");
    }

    #[tokio::test]
    async fn a_missing_program_is_not_started_with_the_reason() {
        let inv = Invocation {
            program: Path::new("/nonexistent/hook"),
            args: &[],
            env: Vec::new(),
            stdin: b"",
            timeout: Duration::from_secs(1),
        };
        let ran = run(&inv).await;
        match ran.ending {
            Ending::NotStarted(why) => assert!(why.contains("No such file"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
}
