//! `orderwatch check`: a good config exits 0 with a summary; every kind of
//! bad config exits 2 with a message naming the file, the key (or TOML
//! line/column) and the bad value — and no secret ever shows up, not in
//! `check`'s output and not in `Debug` of a loaded `Config`.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use common::{bin, output_within, text};
use orderwatch::config::Config;

/// Recognisable secrets: none of them may appear in any output.
const API_KEY: &str = "dc-apikey-SECRET-7f3a9c1e";
/// `whsec_` + base64("orderwatch-test-signing-secret!!"), 32 bytes.
const HOOK_SECRET: &str = "whsec_b3JkZXJ3YXRjaC10ZXN0LXNpZ25pbmctc2VjcmV0ISE=";
const BAD_HOOK_SECRET: &str = "hooksecret-NOT-whsec-4c1d9e";
const URL_PASSWORD: &str = "hunter2pw";
const URL_TOKEN: &str = "tok-9f2b7";

/// A temp dir with a config file in it.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        Setup {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn config(&self) -> PathBuf {
        self.path("orderwatch.toml")
    }

    /// A config `check` accepts: every section, one sink of each type.
    fn good(&self) -> String {
        format!(
            r#"[digicert]
base_url = "https://www.digicert.com/services/v2"
api_key_env = "OW_CHECK_KEY"
timeout = "30s"

[poll]
interval = "1m"
overlap = "10m"
max_window = "7d"

[store]
path = "{store}"

[[sinks]]
name = "archive"
type = "file"
path = "{events}"

[[sinks]]
name = "console"
type = "stdout"

[[sinks]]
name = "hook"
type = "webhook"
url = "https://ops:{URL_PASSWORD}@hooks.example.net/digicert?token={URL_TOKEN}"
secret_env = "OW_CHECK_HOOK"
"#,
            store = self.path("orderwatch.db").display(),
            events = self.path("events.jsonl").display(),
        )
    }

    fn write(&self, toml: &str) {
        std::fs::write(self.config(), toml).expect("write config");
    }

    /// `orderwatch <args>` with both secrets in the environment and nothing
    /// else that could pick a config or a secret.
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.args(args)
            .env("OW_CHECK_KEY", API_KEY)
            .env("OW_CHECK_HOOK", HOOK_SECRET)
            .env_remove("ORDERWATCH_CONFIG")
            .env_remove("DIGICERT_API_KEY")
            .env_remove("CREDENTIALS_DIRECTORY")
            .env_remove("STATE_DIRECTORY")
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1");
        c
    }

    fn check_with(&self, toml: &str, adjust: impl FnOnce(&mut Command)) -> Output {
        self.write(toml);
        let mut c = self.command(&["--config", &self.config().display().to_string(), "check"]);
        adjust(&mut c);
        output_within(c, Duration::from_secs(60))
    }

    fn check(&self, toml: &str) -> Output {
        self.check_with(toml, |_| {})
    }
}

fn all_output(out: &Output) -> String {
    format!("{}{}", text(&out.stdout), text(&out.stderr))
}

/// No secret, URL password or URL token anywhere in the output.
fn assert_no_secrets(out: &Output) {
    let all = all_output(out);
    for secret in [
        API_KEY,
        HOOK_SECRET,
        &HOOK_SECRET["whsec_".len()..],
        BAD_HOOK_SECRET,
        URL_PASSWORD,
        URL_TOKEN,
    ] {
        assert!(!all.contains(secret), "output shows {secret:?}:\n{all}");
    }
}

/// Exit 2, the config file named, every fragment present, no secrets.
fn assert_refused(s: &Setup, out: &Output, fragments: &[&str]) {
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "expected exit 2; stdout:\n{}\nstderr:\n{stderr}",
        text(&out.stdout)
    );
    let config = s.config().display().to_string();
    assert!(stderr.contains(&config), "file not named:\n{stderr}");
    for f in fragments {
        assert!(stderr.contains(f), "{f:?} missing from:\n{stderr}");
    }
    assert_no_secrets(out);
}

/// The 1-based number of the line of `toml` that starts with `start`.
fn line_of(toml: &str, start: &str) -> usize {
    toml.lines()
        .position(|l| l.starts_with(start))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("no line starts with {start:?}"))
}

/// Replaces one line of the good config (the line must exist).
fn replace(toml: &str, old: &str, new: &str) -> String {
    assert!(toml.contains(old), "{old:?} not in the config");
    toml.replacen(old, new, 1)
}

#[test]
fn a_good_config_exits_0_with_a_summary_and_no_secrets() {
    let s = Setup::new();
    let out = s.check(&s.good());
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("{}: ok", s.config().display())),
        "{stdout}"
    );
    for expected in [
        "https://www.digicert.com/services/v2",
        "environment variable OW_CHECK_KEY",
        "every 1m",
        "windows of at most 7days",
        &s.path("orderwatch.db").display().to_string(),
        "sink archive: file",
        "sink console: stdout",
        "sink hook: webhook https://redacted:redacted@hooks.example.net/digicert",
    ] {
        assert!(stdout.contains(expected), "{expected:?} missing:\n{stdout}");
    }
    assert_no_secrets(&out);
}

#[test]
fn max_window_over_seven_days_is_refused() {
    let s = Setup::new();
    let out = s.check(&replace(
        &s.good(),
        "max_window = \"7d\"",
        "max_window = \"8d\"",
    ));
    assert_refused(&s, &out, &["poll.max_window", "\"8d\"", "7 days"]);
}

#[test]
fn a_zero_interval_is_refused() {
    let s = Setup::new();
    let out = s.check(&replace(
        &s.good(),
        "interval = \"1m\"",
        "interval = \"0s\"",
    ));
    assert_refused(&s, &out, &["poll.interval", "\"0s\"", "greater than zero"]);
}

#[test]
fn a_bad_duration_names_key_and_value() {
    let s = Setup::new();
    let out = s.check(&replace(
        &s.good(),
        "overlap = \"10m\"",
        "overlap = \"ten minutes\"",
    ));
    assert_refused(&s, &out, &["poll.overlap", "\"ten minutes\"", "duration"]);
    let out = s.check(&replace(
        &s.good(),
        "name = \"console\"\ntype = \"stdout\"",
        "name = \"console\"\ntype = \"stdout\"\nbackoff_initial = \"5 sekunden\"",
    ));
    assert_refused(
        &s,
        &out,
        &["sinks[1] (\"console\").backoff_initial", "\"5 sekunden\""],
    );
}

#[test]
fn duplicate_sink_names_are_refused() {
    let s = Setup::new();
    let out = s.check(&replace(
        &s.good(),
        "name = \"console\"",
        "name = \"archive\"",
    ));
    assert_refused(&s, &out, &["sinks[1].name", "duplicate", "\"archive\""]);
}

#[test]
fn an_unknown_sink_type_is_refused() {
    let s = Setup::new();
    let out = s.check(&replace(&s.good(), "type = \"stdout\"", "type = \"kafka\""));
    assert_refused(&s, &out, &["sinks[1] (\"console\").type", "\"kafka\""]);
}

#[test]
fn invalid_urls_are_refused_with_credentials_hidden() {
    let s = Setup::new();
    let bad_hook = format!("url = \"https://ops:{URL_PASSWORD}@[::1/digicert?token={URL_TOKEN}\"");
    let out = s.check(&replace(
        &s.good(),
        &format!(
            "url = \"https://ops:{URL_PASSWORD}@hooks.example.net/digicert?token={URL_TOKEN}\""
        ),
        &bad_hook,
    ));
    assert_refused(
        &s,
        &out,
        &["sinks[2] (\"hook\").url", "[::1/digicert", "invalid"],
    );

    let out = s.check(&replace(
        &s.good(),
        &format!(
            "url = \"https://ops:{URL_PASSWORD}@hooks.example.net/digicert?token={URL_TOKEN}\""
        ),
        "url = \"hooks.example.net/digicert\"",
    ));
    assert_refused(
        &s,
        &out,
        &["sinks[2] (\"hook\").url", "\"hooks.example.net/digicert\""],
    );

    let out = s.check(&replace(
        &s.good(),
        "base_url = \"https://www.digicert.com/services/v2\"",
        "base_url = \"www.digicert.com/services/v2\"",
    ));
    assert_refused(
        &s,
        &out,
        &["digicert.base_url", "\"www.digicert.com/services/v2\""],
    );

    // The API key goes in a header; a password in the base URL would end up
    // in every event's `source`.
    let out = s.check(&replace(
        &s.good(),
        "base_url = \"https://www.digicert.com/services/v2\"",
        &format!("base_url = \"https://api:{URL_PASSWORD}@www.digicert.com/services/v2\""),
    ));
    assert_refused(
        &s,
        &out,
        &[
            "digicert.base_url",
            "www.digicert.com/services/v2",
            "password",
        ],
    );
}

#[test]
fn a_file_sink_in_a_missing_directory_is_refused() {
    let s = Setup::new();
    let events = s.path("events.jsonl").display().to_string();
    let missing = s.path("no-such-dir").join("events.jsonl");
    let out = s.check(&replace(&s.good(), &events, &missing.display().to_string()));
    assert_refused(
        &s,
        &out,
        &[
            "sinks[0] (\"archive\").path",
            &missing.display().to_string(),
            "does not exist",
        ],
    );
}

#[test]
fn a_file_sink_in_an_unwritable_directory_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let s = Setup::new();
    let events = s.path("events.jsonl").display().to_string();
    let locked = s.path("read-only");
    std::fs::create_dir(&locked).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o555)).unwrap();
    // Root ignores permission bits; sysfs refuses new files even to root.
    let target = if std::fs::write(locked.join("probe"), "x").is_ok() {
        PathBuf::from("/sys/kernel/orderwatch-events.jsonl")
    } else {
        locked.join("events.jsonl")
    };
    let dir = target.parent().unwrap().display().to_string();
    let out = s.check(&replace(&s.good(), &events, &target.display().to_string()));
    assert_refused(
        &s,
        &out,
        &[
            "sinks[0] (\"archive\").path",
            &target.display().to_string(),
            &format!("directory {dir} is not writable"),
        ],
    );
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();

    // A directory where the file should be.
    let out = s.check(&replace(&s.good(), &events, &locked.display().to_string()));
    assert_refused(
        &s,
        &out,
        &["sinks[0] (\"archive\").path", "cannot be appended to"],
    );
}

#[test]
fn a_store_that_cannot_be_opened_is_refused() {
    let s = Setup::new();
    let store = s.path("orderwatch.db").display().to_string();
    let plain = s.path("plain-file");
    std::fs::write(&plain, "not a directory").unwrap();
    let garbage = s.path("garbage.db");
    std::fs::write(&garbage, vec![b'x'; 8192]).unwrap();
    let cases: [(PathBuf, &str); 4] = [
        (s.path("no-such-dir").join("orderwatch.db"), "No such file"),
        (plain.join("orderwatch.db"), "Not a directory"),
        (s.dir.path().to_path_buf(), "is a directory"),
        (garbage, "not a SQLite database"),
    ];
    for (path, why) in cases {
        let shown = path.display().to_string();
        let out = s.check(&replace(&s.good(), &store, &shown));
        assert_refused(&s, &out, &["store.path", &shown, why]);
    }
}

#[test]
fn a_missing_api_key_is_refused_wherever_it_should_come_from() {
    let s = Setup::new();
    // The variable is not set.
    let out = s.check_with(&s.good(), |c| {
        c.env_remove("OW_CHECK_KEY");
    });
    assert_refused(
        &s,
        &out,
        &["digicert.api_key_env", "OW_CHECK_KEY", "not set"],
    );
    // It is set but empty.
    let out = s.check_with(&s.good(), |c| {
        c.env("OW_CHECK_KEY", "  ");
    });
    assert_refused(&s, &out, &["digicert.api_key_env", "OW_CHECK_KEY", "empty"]);
    // No key configured: the default variable, which is not set.
    let out = s.check(&replace(&s.good(), "api_key_env = \"OW_CHECK_KEY\"\n", ""));
    assert_refused(
        &s,
        &out,
        &["digicert.api_key_env", "DIGICERT_API_KEY", "not set"],
    );
    // The file is missing, then empty.
    let key_file = s.path("digicert-api-key");
    let with_file = replace(
        &s.good(),
        "api_key_env = \"OW_CHECK_KEY\"",
        &format!("api_key_file = \"{}\"", key_file.display()),
    );
    let out = s.check(&with_file);
    assert_refused(
        &s,
        &out,
        &[
            "digicert.api_key_file",
            &key_file.display().to_string(),
            "No such file",
        ],
    );
    std::fs::write(&key_file, "\n").unwrap();
    let out = s.check(&with_file);
    assert_refused(
        &s,
        &out,
        &[
            "digicert.api_key_file",
            &key_file.display().to_string(),
            "empty",
        ],
    );
    // With the key in the file, the same config is good.
    std::fs::write(&key_file, format!("{API_KEY}\n")).unwrap();
    let out = s.check(&with_file);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_no_secrets(&out);
}

#[test]
fn a_webhook_secret_that_is_not_whsec_is_refused_without_showing_it() {
    let s = Setup::new();
    let out = s.check_with(&s.good(), |c| {
        c.env("OW_CHECK_HOOK", BAD_HOOK_SECRET);
    });
    assert_refused(
        &s,
        &out,
        &["sinks[2] (\"hook\").secret_env", "OW_CHECK_HOOK", "whsec_"],
    );
}

#[test]
fn an_unknown_key_is_a_toml_error_with_line_and_column() {
    let s = Setup::new();
    let toml = replace(&s.good(), "interval = \"1m\"", "intervall = \"1m\"");
    let at = format!("line {}, column 1", line_of(&toml, "intervall"));
    let out = s.check(&toml);
    assert_refused(&s, &out, &[&at, "intervall"]);
    // A secret pasted under a key that does not exist is not echoed back.
    let toml = replace(
        &s.good(),
        "timeout = \"30s\"",
        &format!("timeout = \"30s\"\napi_key = \"{API_KEY}\""),
    );
    let at = format!("line {}, column 1", line_of(&toml, "api_key ="));
    let out = s.check(&toml);
    assert_refused(&s, &out, &[&at, "api_key"]);
}

#[test]
fn a_toml_syntax_error_gives_line_and_column() {
    let s = Setup::new();
    // An unterminated string: reported where the line ends.
    let toml = replace(&s.good(), "overlap = \"10m\"", "overlap = \"10m");
    let at = format!("line {}, column 15", line_of(&toml, "overlap"));
    let out = s.check(&toml);
    assert_refused(&s, &out, &[&at]);
    let toml = replace(&s.good(), "[store]", "[store");
    let at = format!("line {}, column", line_of(&toml, "[store"));
    let out = s.check(&toml);
    assert_refused(&s, &out, &[&at]);
}

#[test]
fn several_problems_are_reported_together() {
    let s = Setup::new();
    let toml = replace(&s.good(), "max_window = \"7d\"", "max_window = \"8d\"");
    let toml = replace(&toml, "interval = \"1m\"", "interval = \"0s\"");
    let toml = replace(&toml, "type = \"stdout\"", "type = \"kafka\"");
    let out = s.check(&toml);
    assert_refused(
        &s,
        &out,
        &[
            "3 problems",
            "poll.max_window",
            "poll.interval",
            "\"kafka\"",
        ],
    );
}

#[test]
fn orderwatch_config_is_honoured_and_the_flag_wins_over_it() {
    let s = Setup::new();
    s.write(&s.good());
    let config = s.config().display().to_string();
    let missing = s.path("missing.toml").display().to_string();

    let mut c = s.command(&["check"]);
    c.env("ORDERWATCH_CONFIG", &config);
    let out = output_within(c, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&format!("{config}: ok")));

    // --config wins over the variable, whichever of the two is good.
    let mut c = s.command(&["--config", &config, "check"]);
    c.env("ORDERWATCH_CONFIG", &missing);
    let out = output_within(c, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&format!("{config}: ok")));

    let mut c = s.command(&["--config", &missing, "check"]);
    c.env("ORDERWATCH_CONFIG", &config);
    let out = output_within(c, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(&missing),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_missing_config_file_is_a_clear_error() {
    let s = Setup::new();
    let missing = s.path("missing.toml").display().to_string();
    let out = output_within(
        s.command(&["--config", &missing, "check"]),
        Duration::from_secs(60),
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot read config file {missing}")),
        "{stderr}"
    );
    assert!(stderr.contains("No such file"), "{stderr}");
    assert!(stderr.contains("--config"), "{stderr}");
    assert_eq!(
        stderr.matches("No such file").count(),
        1,
        "cause repeated: {stderr}"
    );

    let mut c = s.command(&["check"]);
    c.env("ORDERWATCH_CONFIG", &missing);
    let out = output_within(c, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains(&missing));
}

#[test]
fn debug_of_a_loaded_config_shows_no_secret_or_url_password() {
    let s = Setup::new();
    let key_file = s.path("api-key");
    let hook_file = s.path("hook-secret");
    std::fs::write(&key_file, API_KEY).unwrap();
    std::fs::write(&hook_file, HOOK_SECRET).unwrap();
    let toml = replace(
        &s.good(),
        "api_key_env = \"OW_CHECK_KEY\"",
        &format!("api_key_file = \"{}\"", key_file.display()),
    );
    let toml = replace(
        &toml,
        "secret_env = \"OW_CHECK_HOOK\"",
        &format!("secret_file = \"{}\"", hook_file.display()),
    );
    s.write(&toml);
    let config = Config::load(&s.config()).expect("config loads");
    let mut shown = format!("{config:?}\n{config:#?}\n");
    for (label, source) in config.secret_sources() {
        let secret = source.load().expect("secret readable");
        shown.push_str(&format!(
            "{label}: {source} {source:?} {secret} {secret:?}\n"
        ));
    }
    for secret in [API_KEY, HOOK_SECRET, URL_PASSWORD, URL_TOKEN] {
        assert!(!shown.contains(secret), "Debug shows {secret:?}:\n{shown}");
    }
    // It still says where things are.
    assert!(shown.contains("hooks.example.net"), "{shown}");
    assert!(shown.contains(&key_file.display().to_string()), "{shown}");
}
