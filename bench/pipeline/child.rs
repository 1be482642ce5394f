//! Running orderwatch (and the Python reference) as child processes: wall
//! time, peak memory and CPU time that are theirs alone.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const API_KEY: &str = "sim-key";

/// One finished child.
pub struct Run {
    pub wall: Duration,
    pub peak_rss_kib: u64,
    pub ok: bool,
    pub stderr: String,
}

/// Runs a child to completion: its wall time, and its peak RSS read from
/// `VmHWM` while it runs. (`wait4`'s `ru_maxrss` would be wrong here: a child
/// spawned with vfork/posix_spawn inherits this process's high-water mark,
/// and this process holds a million-order answer.)
pub fn measure(mut cmd: Command) -> Run {
    let err_path = std::env::temp_dir().join(format!(
        "ow-bench-{}-{:?}.err",
        std::process::id(),
        std::thread::current().id()
    ));
    let err_file = std::fs::File::create(&err_path).expect("stderr file");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err_file);
    let start = Instant::now();
    let mut child = cmd.spawn().expect("spawn");
    let pid = child.id();
    let mut peak = 0;
    let mut read = false;
    let status = loop {
        if let Some(kib) = status_kib(pid, "VmHWM:") {
            peak = peak.max(kib);
            read = true;
        }
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) => std::thread::sleep(Duration::from_millis(1)),
            Err(_) => break None,
        }
    };
    let wall = start.elapsed();
    // A peak of 0 would pass every memory target: without /proc there is
    // no measurement, and the run says so instead of passing.
    assert!(
        read,
        "cannot read VmHWM from /proc/{pid}/status; the peak-RSS targets cannot be measured here"
    );
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    let _ = std::fs::remove_file(&err_path);
    Run {
        wall,
        peak_rss_kib: peak,
        ok: status.is_some_and(|s| s.success()),
        stderr,
    }
}

/// `orderwatch --config CONFIG run --once`, measured ([`measure`]) off the
/// runtime; panics with its stderr if it failed.
pub async fn run_once(config: &Path) -> Run {
    let cmd = orderwatch(config, &["run", "--once"]);
    let run = tokio::task::spawn_blocking(move || measure(cmd))
        .await
        .expect("orderwatch");
    assert!(run.ok, "orderwatch run --once failed: {}", run.stderr);
    run
}

/// A `/proc/PID/status` value in KiB (`VmRSS:`, `VmHWM:`).
pub fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time a process has used (user + system), from `/proc/PID/stat`.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; the fields follow its ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(Duration::from_secs_f64((utime + stime) as f64 / hz as f64))
}

/// A loopback port nothing listens on now (for a server started as a child).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `target/release`: this benchmark runs as `target/release/deps/pipeline-*`,
/// wherever the target directory is.
fn release_dir() -> PathBuf {
    let me = std::env::current_exe().expect("the benchmark's own path");
    me.parent()
        .and_then(Path::parent)
        .expect("the benchmark runs from target/release/deps")
        .to_path_buf()
}

/// The target directory (where `target/bench/pipeline.json` goes).
pub fn target_dir() -> PathBuf {
    let release = release_dir();
    release.parent().unwrap_or(&release).to_path_buf()
}

/// The checkout: the workspace this benchmark's package belongs to.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The release binary, which [`build_orderwatch`] keeps current.
pub fn orderwatch_exe() -> PathBuf {
    release_dir().join("orderwatch")
}

/// Builds the binary that is measured exactly as `cargo build --release`
/// does (and `cargo deb` packages), so the benchmark never measures a stale
/// or differently built one. A no-op when it is up to date.
pub fn build_orderwatch() {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = workspace().join("Cargo.toml");
    let mut build = Command::new(cargo);
    // What cargo set for this benchmark's own run: build scripts that watch
    // one of these (ring watches CARGO_MANIFEST_DIR) would rebuild otherwise.
    for (key, _) in std::env::vars_os() {
        let key_str = key.to_string_lossy();
        if key_str.starts_with("CARGO_PKG_")
            || [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_CRATE_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "CARGO_RUSTC_CURRENT_DIR",
                "OUT_DIR",
            ]
            .contains(&&*key_str)
        {
            build.env_remove(&key);
        }
    }
    let status = build
        .args([
            "build",
            "--release",
            "--package",
            "orderwatch",
            "--bin",
            "orderwatch",
        ])
        .arg("--manifest-path")
        .arg(manifest)
        .status()
        .expect("running cargo build --release");
    assert!(status.success(), "cargo build --release failed: {status}");
    let exe = orderwatch_exe();
    assert!(
        exe.is_file(),
        "no binary at {} after cargo build --release",
        exe.display()
    );
}

/// Writes `orderwatch.toml` in `dir` for the API at `base_url`, with `sinks`
/// (TOML `[[sinks]]` tables) and `poll` settings.
pub fn write_config(dir: &Path, base_url: &str, poll_interval: &str, sinks: &str) -> PathBuf {
    let store = format!("path = \"{}\"\n", dir.join("orderwatch.db").display());
    write_config_with_store(dir, base_url, poll_interval, &store, sinks)
}

/// [`write_config`] with `store` as the body of `[store]` (a PostgreSQL
/// `url` and `password_file`, say).
pub fn write_config_with_store(
    dir: &Path,
    base_url: &str,
    poll_interval: &str,
    store: &str,
    sinks: &str,
) -> PathBuf {
    let path = dir.join("orderwatch.toml");
    let text = format!(
        "[digicert]\nbase_url = \"{base_url}\"\napi_key_env = \"OW_BENCH_KEY\"\ntimeout = \"600s\"\n\
         max_response_size = \"4GiB\"\nmax_requests_per_minute = 180\n\
         [poll]\ninterval = \"{poll_interval}\"\noverlap = \"10m\"\ninitial_lookback = \"1h\"\n\
         [store]\n{store}{sinks}"
    );
    std::fs::write(&path, text).expect("write config");
    path
}

/// A `[[sinks]]` table for a file sink writing to `path`.
pub fn file_sink(path: &Path) -> String {
    format!(
        "[[sinks]]\nname = \"archive\"\ntype = \"file\"\npath = \"{}\"\n",
        path.display()
    )
}

/// `orderwatch --config CONFIG ARGS...`, quiet, not under systemd.
pub fn orderwatch(config: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(orderwatch_exe());
    c.arg("--config").arg(config).args(args);
    c.env("OW_BENCH_KEY", API_KEY)
        .env("RUST_LOG", "orderwatch=warn")
        .env_remove("NOTIFY_SOCKET");
    c
}

pub fn count_lines(path: &Path) -> usize {
    std::fs::read(path)
        .map(|b| b.iter().filter(|c| **c == b'\n').count())
        .unwrap_or(0)
}

pub fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}
