//! Skips that show: a test that lacks a component (root powers,
//! `systemd-analyze`, a Python library) says so in plain `cargo test`
//! output, and fails instead where the environment promises the component.
//!
//! libtest captures what a passing test prints with `println!`/`eprintln!`,
//! so a `skipped:` line printed that way never shows and a green run hides
//! what it did not check. [`skip`] writes to the process's stderr handle
//! directly, which libtest does not capture.

use std::io::Write;

/// Reports that the calling test skips (all or part of) its check because
/// `component` is missing, and why. With `ORDERWATCH_REQUIRE_<COMPONENT>`
/// set (e.g. `ORDERWATCH_REQUIRE_ROOT`, which `.ci/run` sets when it runs
/// as root) the test fails instead: there, a skip would hide a broken check.
///
/// `component` is upper case with underscores: `ROOT`, `SYSTEMD_ANALYZE`.
pub fn skip(component: &str, reason: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("an unnamed test")
        .to_string();
    let required = format!("ORDERWATCH_REQUIRE_{component}");
    if std::env::var_os(&required).is_some() {
        panic!("{test}: {reason}; {required} is set, so this is a failure, not a skip");
    }
    let line = format!("skipped: {test}: {reason} (set {required}=1 to make this fail)\n");
    // Unbuffered, one write: lines of tests running in parallel stay whole.
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// Whether the tests run as root (mount, chattr, permission bits ignored).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}
