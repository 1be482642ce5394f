//! `orderwatch check`: a good config exits 0 with a summary; every kind of
//! bad config exits 2 with a message naming the file, the key (or TOML
//! line/column) and the bad value — and no secret ever shows up, not in
//! `check`'s output and not in `Debug` of a loaded `Config`.
//!
//! The refusals are a table ([`refused!`]): each row is the good config
//! with a few edits, and becomes a test of its own, named for the case.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use crate::support::config::shown_by_loaded_config;
use crate::support::{bin, output_within, text};

mod urls_and_secret_files;

/// Recognisable secrets: none of them may appear in any output.
const API_KEY: &str = "dc-apikey-SECRET-7f3a9c1e";
/// `whsec_` + base64("orderwatch-test-signing-secret!!"), 32 bytes.
const HOOK_SECRET: &str = "whsec_b3JkZXJ3YXRjaC10ZXN0LXNpZ25pbmctc2VjcmV0ISE=";
const BAD_HOOK_SECRET: &str = "hooksecret-NOT-whsec-4c1d9e";
const URL_PASSWORD: &str = "hunter2pw";
const URL_TOKEN: &str = "tok-9f2b7";

/// A config `check` accepts: every section, one sink of each type. In it
/// and in every string of a [`refused!`] row, `{dir}` is the test's
/// directory, `{password}` and `{token}` the webhook URL's secrets.
const GOOD: &str = r#"[digicert]
base_url = "https://www.digicert.com/services/v2"
api_key_env = "OW_CHECK_KEY"
timeout = "30s"

[poll]
interval = "1m"
overlap = "10m"
max_window = "7d"

[store]
path = "{dir}/orderwatch.db"

[[sinks]]
name = "archive"
type = "file"
path = "{dir}/events.jsonl"

[[sinks]]
name = "console"
type = "stdout"

[[sinks]]
name = "hook"
type = "webhook"
url = "https://ops:{password}@hooks.example.net/digicert?token={token}"
secret_env = "OW_CHECK_HOOK"
"#;

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

    /// `text` with the placeholders filled in.
    fn expand(&self, text: &str) -> String {
        text.replace("{dir}", &self.dir.path().display().to_string())
            .replace("{password}", URL_PASSWORD)
            .replace("{token}", URL_TOKEN)
    }

    /// The good config.
    fn good(&self) -> String {
        self.expand(GOOD)
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

/// Replaces the first `old` in the config (which must be there).
fn replace(toml: &str, old: &str, new: &str) -> String {
    assert!(toml.contains(old), "{old:?} not in the config");
    toml.replacen(old, new, 1)
}

/// One row of the [`refused!`] table.
struct Refusal {
    /// `(old, new)` replacements in the good config, in order.
    edits: &'static [(&'static str, &'static str)],
    /// Environment changes for `check`: `Some` sets, `None` unsets.
    env: &'static [(&'static str, Option<&'static str>)],
    /// Files created in the test's directory first.
    files: &'static [(&'static str, &'static [u8])],
    /// What stderr must say.
    expect: &'static [&'static str],
}

impl Refusal {
    fn check(&self) {
        let s = Setup::new();
        for (name, content) in self.files {
            std::fs::write(s.path(name), content).expect("write file");
        }
        let toml = self.edits.iter().fold(s.good(), |toml, (old, new)| {
            replace(&toml, &s.expand(old), &s.expand(new))
        });
        let out = s.check_with(&toml, |c| {
            for (var, value) in self.env {
                match value {
                    Some(v) => c.env(var, v),
                    None => c.env_remove(var),
                };
            }
        });
        let expect: Vec<String> = self.expect.iter().map(|f| s.expand(f)).collect();
        let expect: Vec<&str> = expect.iter().map(String::as_str).collect();
        assert_refused(&s, &out, &expect);
    }
}

/// `name { edit: [..], env: [..], files: [..], expect: [..] }`: a test
/// `name` checking that the good config, so changed, is refused with every
/// `expect` fragment on stderr. `edit`, `env` and `files` are optional.
macro_rules! refused {
    ($(
        $name:ident {
            $(edit: [$(($old:expr, $new:expr)),* $(,)?],)?
            $(env: [$(($var:expr, $value:expr)),* $(,)?],)?
            $(files: [$(($file:expr, $content:expr)),* $(,)?],)?
            expect: [$($fragment:expr),* $(,)?] $(,)?
        }
    )*) => {$(
        #[test]
        fn $name() {
            Refusal {
                edits: &[$($(($old, $new)),*)?],
                env: &[$($(($var, $value)),*)?],
                files: &[$($(($file, $content)),*)?],
                expect: &[$($fragment),*],
            }
            .check();
        }
    )*};
}

const HOOK_URL: &str = "url = \"https://ops:{password}@hooks.example.net/digicert?token={token}\"";
const BASE_URL: &str = "base_url = \"https://www.digicert.com/services/v2\"";
const STORE: &str = "\"{dir}/orderwatch.db\"";
const KEY_ENV: &str = "api_key_env = \"OW_CHECK_KEY\"";
const KEY_FILE: &str = "api_key_file = \"{dir}/digicert-api-key\"";

refused! {
    max_window_over_seven_days_is_refused {
        edit: [("max_window = \"7d\"", "max_window = \"8d\"")],
        expect: ["poll.max_window", "\"8d\"", "7 days"],
    }
    a_zero_interval_is_refused {
        edit: [("interval = \"1m\"", "interval = \"0s\"")],
        expect: ["poll.interval", "\"0s\"", "greater than zero"],
    }
    a_sub_second_interval_is_refused {
        edit: [("interval = \"1m\"", "interval = \"1ms\"")],
        expect: ["poll.interval", "at least 1s", "1ms"],
    }
    a_bad_poll_duration_names_key_and_value {
        edit: [("overlap = \"10m\"", "overlap = \"ten minutes\"")],
        expect: ["poll.overlap", "\"ten minutes\"", "duration"],
    }
    a_bad_sink_duration_names_the_sink_key_and_value {
        edit: [("type = \"stdout\"", "type = \"stdout\"\nbackoff_initial = \"5 sekunden\"")],
        expect: ["sinks[1] (\"console\").backoff_initial", "\"5 sekunden\""],
    }
    duplicate_sink_names_are_refused {
        edit: [("name = \"console\"", "name = \"archive\"")],
        expect: ["sinks[1].name", "duplicate", "\"archive\""],
    }
    an_unknown_sink_type_is_refused {
        edit: [("type = \"stdout\"", "type = \"kafka\"")],
        expect: ["sinks[1] (\"console\").type", "\"kafka\""],
    }
    an_unparsable_webhook_url_is_refused_with_its_credentials_hidden {
        edit: [(HOOK_URL, "url = \"https://ops:{password}@[::1/digicert?token={token}\"")],
        expect: ["sinks[2] (\"hook\").url", "[::1/digicert", "invalid"],
    }
    a_webhook_url_without_a_scheme_is_refused {
        edit: [(HOOK_URL, "url = \"hooks.example.net/digicert\"")],
        expect: ["sinks[2] (\"hook\").url", "\"hooks.example.net/digicert\""],
    }
    a_base_url_without_a_scheme_is_refused {
        edit: [(BASE_URL, "base_url = \"www.digicert.com/services/v2\"")],
        expect: ["digicert.base_url", "\"www.digicert.com/services/v2\""],
    }
    // The API key goes in a header; a password in the base URL would end
    // up in every event's `source`.
    a_password_in_the_base_url_is_refused_without_showing_it {
        edit: [(BASE_URL, "base_url = \"https://api:{password}@www.digicert.com/services/v2\"")],
        expect: ["digicert.base_url", "www.digicert.com/services/v2", "password"],
    }
    a_file_sink_in_a_missing_directory_is_refused {
        edit: [("{dir}/events.jsonl", "{dir}/no-such-dir/events.jsonl")],
        expect: ["sinks[0] (\"archive\").path", "{dir}/no-such-dir/events.jsonl", "does not exist"],
    }
    a_store_in_a_missing_directory_is_refused {
        edit: [(STORE, "\"{dir}/no-such-dir/orderwatch.db\"")],
        expect: ["store.path", "{dir}/no-such-dir/orderwatch.db", "No such file"],
    }
    a_store_under_a_plain_file_is_refused {
        edit: [(STORE, "\"{dir}/plain-file/orderwatch.db\"")],
        files: [("plain-file", b"not a directory")],
        expect: ["store.path", "{dir}/plain-file/orderwatch.db", "Not a directory"],
    }
    a_store_path_that_is_a_directory_is_refused {
        edit: [(STORE, "\"{dir}\"")],
        expect: ["store.path", "{dir}", "is a directory"],
    }
    a_store_that_is_not_a_database_is_refused {
        edit: [(STORE, "\"{dir}/garbage.db\"")],
        files: [("garbage.db", &[b'x'; 8192])],
        expect: ["store.path", "{dir}/garbage.db", "not a SQLite database"],
    }
    an_unset_api_key_variable_is_refused {
        env: [("OW_CHECK_KEY", None)],
        expect: ["digicert.api_key_env", "OW_CHECK_KEY", "not set"],
    }
    an_empty_api_key_variable_is_refused {
        env: [("OW_CHECK_KEY", Some("  "))],
        expect: ["digicert.api_key_env", "OW_CHECK_KEY", "empty"],
    }
    without_a_configured_key_the_unset_default_variable_is_refused {
        edit: [("api_key_env = \"OW_CHECK_KEY\"\n", "")],
        expect: ["digicert.api_key_env", "DIGICERT_API_KEY", "not set"],
    }
    a_missing_api_key_file_is_refused {
        edit: [(KEY_ENV, KEY_FILE)],
        expect: ["digicert.api_key_file", "{dir}/digicert-api-key", "No such file"],
    }
    an_empty_api_key_file_is_refused {
        edit: [(KEY_ENV, KEY_FILE)],
        files: [("digicert-api-key", b"\n")],
        expect: ["digicert.api_key_file", "{dir}/digicert-api-key", "empty"],
    }
    a_webhook_secret_that_is_not_whsec_is_refused_without_showing_it {
        env: [("OW_CHECK_HOOK", Some(BAD_HOOK_SECRET))],
        expect: ["sinks[2] (\"hook\").secret_env", "OW_CHECK_HOOK", "whsec_"],
    }
    // Item 11 of issue 17: a sink's URL follows the API's plain-http rule.
    plain_http_to_a_remote_webhook_is_refused_naming_sink_and_key_but_not_its_credentials {
        edit: [(HOOK_URL, "url = \"http://ops:{password}@hooks.example.net/digicert?token={token}\"")],
        expect: [
            "sinks[2] (\"hook\").url",
            "http://redacted:redacted@hooks.example.net/digicert?redacted",
            "plain http",
            "allow_insecure_http = true",
        ],
    }
    plain_http_to_a_link_local_metadata_address_is_refused {
        edit: [(HOOK_URL, "url = \"http://169.254.169.254/latest/meta-data/\"")],
        expect: ["sinks[2] (\"hook\").url", "169.254.169.254", "allow_insecure_http = true"],
    }
    // The opt-in is per section: the API's does not cover a sink.
    the_apis_insecure_http_opt_in_does_not_cover_a_webhook {
        edit: [
            (BASE_URL, "base_url = \"http://api.example.net/v2\"\nallow_insecure_http = true"),
            (HOOK_URL, "url = \"http://hooks.example.net/digicert\""),
        ],
        expect: ["sinks[2] (\"hook\").url", "hooks.example.net", "allow_insecure_http = true"],
    }
    several_problems_are_reported_together {
        edit: [
            ("max_window = \"7d\"", "max_window = \"8d\""),
            ("interval = \"1m\"", "interval = \"0s\""),
            ("type = \"stdout\"", "type = \"kafka\""),
        ],
        expect: ["3 problems", "poll.max_window", "poll.interval", "\"kafka\""],
    }
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
fn an_api_key_file_holding_the_key_is_accepted() {
    let s = Setup::new();
    std::fs::write(s.path("digicert-api-key"), format!("{API_KEY}\n")).unwrap();
    let out = s.check(&replace(&s.good(), KEY_ENV, &s.expand(KEY_FILE)));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_no_secrets(&out);
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
        KEY_ENV,
        &format!("api_key_file = \"{}\"", key_file.display()),
    );
    let toml = replace(
        &toml,
        "secret_env = \"OW_CHECK_HOOK\"",
        &format!("secret_file = \"{}\"", hook_file.display()),
    );
    s.write(&toml);
    let shown = shown_by_loaded_config(&s.config());
    for secret in [API_KEY, HOOK_SECRET, URL_PASSWORD, URL_TOKEN] {
        assert!(!shown.contains(secret), "Debug shows {secret:?}:\n{shown}");
    }
    // It still says where things are.
    assert!(shown.contains("hooks.example.net"), "{shown}");
    assert!(shown.contains(&key_file.display().to_string()), "{shown}");
}

#[test]
fn huge_or_blocking_config_and_secret_files_are_refused_at_once() {
    let s = Setup::new();
    let fifo = s.path("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid C string; mkfifo has no other preconditions.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    // The config itself: /dev/zero would eat memory, a FIFO would block.
    for config in ["/dev/zero", fifo.to_str().unwrap()] {
        let c = s.command(&["--config", config, "check"]);
        let out = output_within(c, Duration::from_secs(20));
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{config}: {err}");
        assert!(err.contains("not a regular file"), "{err}");
    }
    // A secret file, and a file sink's path.
    for (from, to) in [
        (
            "api_key_env = \"OW_CHECK_KEY\"",
            "api_key_file = \"/dev/zero\"".to_string(),
        ),
        (
            "path = \"{dir}/events.jsonl\"",
            format!("path = {:?}", fifo.display().to_string()),
        ),
    ] {
        let toml = s.good().replace(&s.expand(from), &to);
        let out = s.check(&toml);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{to}: {err}");
        assert!(err.contains("not a regular file"), "{to}: {err}");
    }
}

/// A store whose directory is missing cannot start however often systemd
/// restarts it: `check` and `run` both refuse it as configuration (exit 2,
/// which the unit does not restart), before anything is opened.
#[test]
fn a_store_in_a_missing_directory_is_a_config_error_for_check_and_run() {
    let s = Setup::new();
    let toml = replace(
        &s.good(),
        &s.expand(STORE),
        &s.expand("\"{dir}/nodir/orderwatch.db\""),
    );
    let expect = ["store.path", "cannot use directory", "nodir"];
    assert_refused(&s, &s.check(&toml), &expect);
    let run = s.command(&[
        "--config",
        &s.config().display().to_string(),
        "run",
        "--once",
    ]);
    assert_refused(&s, &output_within(run, Duration::from_secs(60)), &expect);
    assert!(!s.path("nodir").exists());
}

/// A secret pasted where the name of its variable belongs is refused
/// without being repeated (it would land in the journal).
#[test]
fn a_secret_in_an_env_key_is_refused_without_showing_it() {
    let s = Setup::new();
    let toml = replace(
        &s.good(),
        "secret_env = \"OW_CHECK_HOOK\"",
        &format!("secret_env = \"{HOOK_SECRET}\""),
    );
    let toml = replace(&toml, KEY_ENV, &format!("api_key_env = \"{API_KEY}\""));
    let out = s.check(&toml);
    assert_refused(
        &s,
        &out,
        &[
            "sinks[2] (\"hook\").secret_env: is not the name of an environment variable",
            "digicert.api_key_env: is not the name of an environment variable",
        ],
    );
}

#[test]
fn check_says_an_operational_sink_receives_alerts_not_transitions() {
    let s = Setup::new();
    let toml = format!(
        "{}\n[[sinks]]\nname = \"ops\"\ntype = \"file\"\npath = \"{}\"\noperational = true\n",
        s.good(),
        s.path("alerts.jsonl").display()
    );
    let out = s.check(&toml);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    let line = stdout
        .lines()
        .find(|l| l.contains("sink ops:"))
        .unwrap_or_default();
    assert!(
        line.contains("alerts only") && !line.contains("all statuses"),
        "{stdout}"
    );
}
