//! The systemd unit file: its directives (a notify service with watchdog,
//! reload and restart; a dynamic user with state, config and credentials;
//! a sandbox that keeps outbound network, DNS and sd_notify),
//! `systemd-analyze verify` and the offline security score.
//!
//! The `systemd-analyze` checks run where the tool is installed and skip
//! visibly elsewhere; with `ORDERWATCH_REQUIRE_SYSTEMD_ANALYZE=1` (set by
//! `.ci/run` once it has the tool) a missing tool fails instead.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::support::config::SHUTDOWN_GRACE;
use crate::support::{bin, skip, text};

const UNIT_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/orderwatch.service");
const BINARY: &str = "/usr/bin/orderwatch";

fn unit_text() -> String {
    std::fs::read_to_string(UNIT_PATH).expect("systemd/orderwatch.service exists")
}

/// `(section, key, value)` of every directive, comments skipped.
fn directives(unit: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in unit.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') && line.ends_with(']') {
            section = line.trim_matches(['[', ']']).to_string();
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not a directive: {line:?}"));
        out.push((
            section.clone(),
            key.trim().to_string(),
            value.trim().to_string(),
        ));
    }
    out
}

/// Every value of `key` in `[Service]`.
fn service(key: &str) -> Vec<String> {
    directives(&unit_text())
        .into_iter()
        .filter(|(s, k, _)| s == "Service" && k == key)
        .map(|(_, _, v)| v)
        .collect()
}

/// The single value of `key` in `[Service]`.
fn one(key: &str) -> String {
    let values = service(key);
    assert_eq!(
        values.len(),
        1,
        "{key}= should be set exactly once: {values:?}"
    );
    values[0].clone()
}

#[test]
fn the_unit_is_a_notify_service_with_watchdog_reload_and_restart() {
    assert_eq!(one("Type"), "notify");
    // check's verdict is logged but ignored ("-"): systemd would restart
    // after a failed ExecStartPre= whatever RestartPreventExitStatus= says;
    // `run` refuses a bad config itself with exit 2, which stops restarts.
    assert_eq!(one("ExecStartPre"), format!("-{BINARY} check"));
    assert_eq!(one("RestartPreventExitStatus"), "2");
    assert_eq!(one("ExecStart"), format!("{BINARY} run"));
    let reload = one("ExecReload");
    assert!(
        reload == "kill -HUP $MAINPID" || reload.ends_with("/kill -HUP $MAINPID"),
        "ExecReload={reload}"
    );
    assert_eq!(one("Restart"), "on-failure");
    assert_eq!(one("NotifyAccess"), "main");
    // The watchdog must outlast one CertCentral request at the default
    // 30 s timeout, or a healthy daemon gets restarted mid-request.
    let watchdog = humantime::parse_duration(&one("WatchdogSec")).expect("WatchdogSec parses");
    assert!(
        watchdog >= Duration::from_secs(60),
        "WatchdogSec={watchdog:?}"
    );
    // systemd must wait longer than the shutdown grace for in-flight deliveries.
    let stop = humantime::parse_duration(&one("TimeoutStopSec")).expect("TimeoutStopSec parses");
    assert!(stop > SHUTDOWN_GRACE, "TimeoutStopSec={stop:?}");
}

#[test]
fn the_unit_runs_as_a_dynamic_user_with_state_config_and_credentials() {
    assert_eq!(one("DynamicUser"), "yes");
    assert_eq!(one("StateDirectory"), "orderwatch");
    assert_eq!(one("ConfigurationDirectory"), "orderwatch");
    assert!(
        service("LoadCredential")
            .contains(&"digicert-api-key:/etc/orderwatch/digicert-api-key".to_string()),
        "LoadCredential={:?}",
        service("LoadCredential")
    );
    // The webhook secret example is there, commented out, with the name the
    // config loader looks for.
    assert!(
        unit_text()
            .lines()
            .any(|l| l.starts_with("#LoadCredential=webhook-")),
        "no commented LoadCredential=webhook-<sink> example"
    );
    // Secrets never travel in the environment.
    assert!(service("Environment").iter().all(|e| !e.contains("KEY")));
}

#[test]
fn the_sandbox_keeps_outbound_network_dns_and_sd_notify() {
    let families: Vec<String> = one("RestrictAddressFamilies")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(families, ["AF_UNIX", "AF_INET", "AF_INET6"]);
    assert!(
        service("PrivateNetwork")
            .iter()
            .all(|v| v != "yes" && v != "true"),
        "PrivateNetwork would cut off DigiCert, webhooks and /metrics"
    );
    assert!(
        service("IPAddressDeny").is_empty(),
        "IPAddressDeny= would block outbound HTTPS to addresses we cannot list"
    );
    assert_eq!(one("ProtectSystem"), "strict");
    assert_eq!(one("NoNewPrivileges"), "yes");
    assert_eq!(one("CapabilityBoundingSet"), "");
}

/// `systemd-analyze`, or `None` (after a visible skip) where it is not
/// installed.
fn systemd_analyze() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("systemd-analyze"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        skip("SYSTEMD_ANALYZE", "systemd-analyze is not installed");
    }
    found
}

#[test]
fn the_unit_passes_systemd_analyze_verify() {
    let Some(tool) = systemd_analyze() else {
        return;
    };
    // verify insists that every Exec binary exists: point the copy at the
    // binary cargo built, and change nothing else.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("orderwatch.service");
    let unit = unit_text().replace(BINARY, &bin().display().to_string());
    std::fs::write(&copy, unit).unwrap();
    let out = Command::new(tool)
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("systemd-analyze runs");
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "verify failed:\n{stderr}");
    // verify exits 0 even after "Unknown key" or "Failed to parse": any
    // complaint about our unit counts.
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("orderwatch.service"))
        .collect();
    assert!(complaints.is_empty(), "verify complained:\n{stderr}");
}

#[test]
fn the_unit_scores_an_exposure_of_at_most_1_5() {
    let Some(tool) = systemd_analyze() else {
        return;
    };
    let out = Command::new(tool)
        .args(["security", "--offline=true", "--no-pager"])
        .arg(UNIT_PATH)
        .output()
        .expect("systemd-analyze runs");
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "security failed:\n{stdout}{}",
        text(&out.stderr)
    );
    let score: f64 = stdout
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for orderwatch.service:")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no overall exposure in:\n{stdout}"));
    assert!(score <= 1.5, "exposure {score} > 1.5:\n{stdout}");
}
