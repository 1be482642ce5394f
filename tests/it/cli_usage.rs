//! Every command with missing or malformed arguments exits 2 with usage help
//! on stderr, names what is wrong, and does nothing else: no config is
//! read, no store is created, nothing listens.

use std::path::Path;
use std::time::Duration;

use crate::support::{bin, output_within, text};

/// (arguments, a fragment naming what is wrong).
const CASES: &[(&[&str], &str)] = &[
    // No command at all, or an unknown one.
    (&[], "Usage:"),
    (&["frobnicate"], "unrecognized subcommand 'frobnicate'"),
    (&["--log-format", "xml", "check"], "invalid value 'xml'"),
    (
        &["check", "--config"],
        "a value is required for '--config <PATH>'",
    ),
    // run
    (&["run", "--bogus"], "unexpected argument '--bogus'"),
    (&["run", "now"], "unexpected argument 'now'"),
    (&["run", "--drain-timeout", "1m"], "--once"),
    (
        &["run", "--once", "--drain-timeout", "soon"],
        "invalid value 'soon'",
    ),
    (&["run", "--once", "--drain-timeout"], "a value is required"),
    // check
    (&["check", "extra"], "unexpected argument 'extra'"),
    (&["check", "--strict"], "unexpected argument '--strict'"),
    (&["check", "--online=yes"], "unexpected value 'yes'"),
    // cancel
    (&["cancel"], "ORDER_ID"),
    (&["cancel", "264"], "--note <NOTE>"),
    (&["cancel", "abc", "--note", "x"], "invalid value 'abc'"),
    (&["cancel", "0", "--note", "x"], "invalid value '0'"),
    (&["cancel", "-5", "--note", "x"], "unexpected argument '-5'"),
    (
        &["cancel", "99999999999999999999", "--note", "x"],
        "invalid value",
    ),
    (&["cancel", "264", "--note", "   "], "must not be empty"),
    (&["cancel", "264", "--note"], "a value is required"),
    // events
    (&["events", "--since", "forever"], "invalid value 'forever'"),
    (&["events", "--limit", "0"], "invalid value '0'"),
    (&["events", "--limit", "many"], "invalid value 'many'"),
    (&["events", "--order", "abc"], "invalid value 'abc'"),
    (&["events", "--order"], "a value is required"),
    (&["events", "--json", "yes"], "unexpected argument 'yes'"),
    // deliveries
    (
        &["deliveries", "--state", "sideways"],
        "invalid value 'sideways'",
    ),
    (&["deliveries", "--limit", "0"], "invalid value '0'"),
    (&["deliveries", "--sink"], "a value is required"),
    (
        &["deliveries", "--purge-dead"],
        "required arguments were not provided",
    ),
    (
        &["deliveries", "--older-than", "30d"],
        "required arguments were not provided",
    ),
    (
        &[
            "deliveries",
            "--purge-dead",
            "--older-than",
            "30d",
            "--json",
        ],
        "cannot be used with",
    ),
    // redeliver
    (&["redeliver"], "--sink <NAME>"),
    (&["redeliver", "--sink", "hook"], "--event <ID>"),
    (
        &["redeliver", "--sink", "hook", "--dead", "--since", "1h"],
        "cannot be used with",
    ),
    (
        &["redeliver", "--sink", "hook", "--since", "yesterday"],
        "invalid value 'yesterday'",
    ),
    (&["redeliver", "--dead"], "--sink <NAME>"),
    // simulate
    (
        &["simulate", "--listen", "nowhere"],
        "invalid value 'nowhere'",
    ),
    (
        &["simulate", "--listen", "127.0.0.1"],
        "invalid value '127.0.0.1'",
    ),
    (&["simulate", "--rate", "fast"], "invalid value 'fast'"),
    (&["simulate", "--orders", "-3"], "unexpected argument '-3'"),
    (&["simulate", "--seed", "x"], "invalid value 'x'"),
    (&["simulate", "--page-size", "x"], "invalid value 'x'"),
    // demo
    (&["demo", "--rate", "x"], "invalid value 'x'"),
    (&["demo", "--seed", "-1"], "unexpected argument '-1'"),
    (&["demo", "extra"], "unexpected argument 'extra'"),
    // store
    (&["store"], "Usage:"),
    (&["store", "copy"], "--to <URL|PATH>"),
    (&["store", "copy", "--to"], "a value is required"),
    (
        &[
            "store",
            "copy",
            "--to",
            "x.db",
            "--password-env",
            "A",
            "--password-file",
            "b",
        ],
        "cannot be used with",
    ),
    (
        &["store", "move", "--to", "x.db"],
        "unrecognized subcommand 'move'",
    ),
    // test-sink
    (&["test-sink"], "required arguments were not provided"),
    (
        &["test-sink", "hook", "extra"],
        "unexpected argument 'extra'",
    ),
    // completions
    (&["completions"], "required arguments were not provided"),
    (&["completions", "powershell"], "invalid value 'powershell'"),
    (&["completions", "bash", "zsh"], "unexpected argument 'zsh'"),
];

#[test]
fn every_command_with_bad_arguments_exits_2_with_usage_and_does_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    // A config that exists but must never be read: a store beside it would
    // mean a command ran.
    let config = dir.path().join("orderwatch.toml");
    let store = dir.path().join("orderwatch.db");
    std::fs::write(
        &config,
        format!("[store]\npath = \"{}\"\n", store.display()),
    )
    .expect("write config");
    let mut failures = Vec::new();
    for (args, fragment) in CASES {
        let mut cmd = std::process::Command::new(bin());
        cmd.args(*args)
            .current_dir(dir.path())
            .env("ORDERWATCH_CONFIG", &config)
            .env("DIGICERT_API_KEY", "never-used")
            .env("NO_COLOR", "1");
        let out = output_within(cmd, Duration::from_secs(30));
        let err = text(&out.stderr);
        let problem = if out.status.code() != Some(2) {
            Some(format!("exit {:?}", out.status.code()))
        } else if !err.contains("Usage:") {
            Some("no usage".to_string())
        } else if !err.contains(fragment) {
            Some(format!("no {fragment:?}"))
        } else if !out.stdout.is_empty() {
            Some(format!("stdout: {}", text(&out.stdout)))
        } else if err.contains("panicked") {
            Some("panic".to_string())
        } else {
            None
        };
        if let Some(p) = problem {
            failures.push(format!("orderwatch {}: {p}\n{err}", args.join(" ")));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(!store.exists(), "a command ran despite bad arguments");
    assert_only(dir.path(), &["orderwatch.toml"]);
}

#[test]
fn every_command_is_covered_by_the_table() {
    let out = output_within(
        {
            let mut c = std::process::Command::new(bin());
            c.arg("--help");
            c
        },
        Duration::from_secs(30),
    );
    let help = text(&out.stdout);
    let commands: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert_eq!(
        commands,
        [
            "run",
            "check",
            "cancel",
            "events",
            "deliveries",
            "redeliver",
            "test-sink",
            "simulate",
            "demo",
            "store",
            "completions"
        ],
        "{help}"
    );
    for c in commands {
        assert!(
            CASES.iter().any(|(args, _)| args.first() == Some(&c)),
            "no bad-argument case for `{c}`"
        );
    }
}

/// The directory holds exactly these names.
fn assert_only(dir: &Path, names: &[&str]) {
    let mut found: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    assert_eq!(found, names);
}
