//! Config validation: every problem named by its key, secrets never shown,
//! and arbitrary TOML never panics parsing, checking or planning.

use super::field::shown_url;
use super::*;

fn env(k: &str) -> Option<String> {
    match k {
        "STATE_DIRECTORY" => Some("/var/lib/orderwatch".to_string()),
        _ => None,
    }
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("/etc/orderwatch/test.toml"), &env)
}

fn problems(text: &str) -> Vec<Problem> {
    match parse(text) {
        Err(ConfigError::Invalid { problems, .. }) => problems,
        other => panic!("expected invalid config, got {other:?}"),
    }
}

#[test]
fn empty_file_gives_documented_defaults() {
    let c = parse("").unwrap();
    assert_eq!(c.digicert.base_url, US_BASE_URL);
    assert_eq!(c.digicert.timeout, Duration::from_secs(30));
    assert_eq!(c.digicert.timezone, chrono_tz::America::Denver);
    assert_eq!(c.digicert.max_requests_per_minute, 60);
    assert_eq!(
        c.digicert.api_key,
        SecretSource::Env("DIGICERT_API_KEY".into())
    );
    assert_eq!(c.poll.interval, Duration::from_secs(60));
    assert_eq!(c.poll.overlap, Duration::from_secs(600));
    assert_eq!(c.poll.initial_lookback, Duration::from_secs(3600));
    assert_eq!(c.poll.max_window, API_MAX_WINDOW);
    assert_eq!(
        c.store,
        StoreConfig::Sqlite {
            path: PathBuf::from("/var/lib/orderwatch/orderwatch.db")
        }
    );
    assert!(c.sinks.is_empty());
}

#[test]
fn eu_instance_selects_the_european_url() {
    let c = parse("[digicert]\ninstance = \"eu\"\n").unwrap();
    assert_eq!(c.digicert.base_url, EU_BASE_URL);
}

#[test]
fn unknown_keys_are_syntax_errors_with_line_numbers() {
    let err = parse("[poll]\nintervall = \"1m\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("intervall"), "{err}");
    assert!(err.contains("line 2"), "{err}");
    assert!(err.contains("test.toml"), "{err}");
}

#[test]
fn max_window_over_seven_days_is_refused() {
    let p = problems("[poll]\nmax_window = \"8d\"\n");
    assert_eq!(p[0].key, "poll.max_window");
    assert!(p[0].message.contains("8d"), "{}", p[0].message);
}

#[test]
fn zero_interval_and_bad_durations_name_the_key_and_value() {
    let p = problems("[poll]\ninterval = \"0s\"\noverlap = \"ten minutes\"\n");
    assert!(p.iter().any(|p| p.key == "poll.interval"));
    assert!(
        p.iter()
            .any(|p| p.key == "poll.overlap" && p.message.contains("ten minutes"))
    );
}

#[test]
fn duplicate_and_unknown_sinks_are_named() {
    let p = problems(
        "[[sinks]]\nname = \"a\"\ntype = \"stdout\"\n[[sinks]]\nname = \"a\"\ntype = \"stdout\"\n[[sinks]]\nname = \"b\"\ntype = \"kafka\"\n",
    );
    assert!(
        p.iter()
            .any(|p| p.message.contains("duplicate sink name \"a\"")),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|p| p.key == "sinks[2] (\"b\").type" && p.message.contains("kafka")),
        "{p:?}"
    );
}

#[test]
fn a_duplicate_name_is_reported_with_the_sinks_other_problems() {
    let p = problems(
        "[[sinks]]\nname = \"a\"\ntype = \"webhook\"\nurl = \"not a url\"\nsecret_env = \"S\"\n[[sinks]]\nname = \"a\"\ntype = \"stdout\"\n",
    );
    let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
    assert!(keys.contains(&"sinks[0] (\"a\").url"), "{p:?}");
    assert!(keys.contains(&"sinks[1].name"), "{p:?}");
}

#[test]
fn keys_of_other_sink_types_are_refused() {
    let p = problems(
        "[[sinks]]\nname = \"f\"\ntype = \"file\"\npath = \"/tmp/x\"\nurl = \"https://x\"\n",
    );
    assert_eq!(p[0].key, "sinks[0] (\"f\").url");
}

#[test]
fn webhook_url_must_be_http_and_errors_hide_credentials() {
    let p = problems(
        "[[sinks]]\nname = \"w\"\ntype = \"webhook\"\nurl = \"ftp://user:hunter2@example.net/\"\nsecret_env = \"S\"\n",
    );
    assert_eq!(p[0].key, "sinks[0] (\"w\").url");
    assert!(!p[0].message.contains("hunter2"), "{}", p[0].message);
}

#[test]
fn plain_http_api_to_remote_host_needs_opt_in() {
    let p = problems("[digicert]\nbase_url = \"http://api.example.net/services/v2\"\n");
    assert_eq!(p[0].key, "digicert.base_url");
    assert!(
        parse("[digicert]\nbase_url = \"http://api.example.net/v2\"\nallow_insecure_http = true\n")
            .is_ok()
    );
    assert!(parse("[digicert]\nbase_url = \"http://127.0.0.1:8080/services/v2/\"\n").is_ok());
}

#[test]
fn store_path_without_state_directory_is_an_error() {
    let err = Config::parse("", Path::new("x.toml"), &|_| None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("store.path"), "{err}");
}

#[test]
fn redacted_url_hides_password_and_query() {
    let u =
        RedactedUrl::new(reqwest::Url::parse("https://bob:pw@example.net/h?token=abc").unwrap());
    let shown = format!("{u} {u:?}");
    assert!(
        !shown.contains("pw@") && !shown.contains("abc") && !shown.contains("bob"),
        "{shown}"
    );
    assert!(shown.contains("example.net/h"), "{shown}");
}

#[test]
fn sizes_parse_with_units() {
    assert_eq!(parse_size("256MiB"), Ok(256 << 20));
    assert_eq!(parse_size("10 KB"), Ok(10_000));
    assert_eq!(parse_size("12"), Ok(12));
    assert!(parse_size("lots").is_err());
}

#[test]
fn status_filter_matches_case_insensitively() {
    let c = parse("[[sinks]]\nname = \"o\"\ntype = \"stdout\"\nstatuses = [\"Issued\"]\n").unwrap();
    assert!(c.sinks[0].wants("issued"));
    assert!(!c.sinks[0].wants("pending"));
}

#[test]
fn syntax_errors_give_line_and_column_but_never_repeat_the_line() {
    // A secret pasted under a key that does not exist must not be echoed.
    let err = parse("[digicert]\n\napi_key = \"dc-SECRET-123\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("line 3, column 1"), "{err}");
    assert!(err.contains("api_key"), "{err}");
    assert!(!err.contains("dc-SECRET-123"), "{err}");
    let err = parse("[poll]\ninterval = \"1s\n").unwrap_err().to_string();
    assert!(err.contains("line 2, column"), "{err}");
    assert!(err.starts_with("/etc/orderwatch/test.toml: "), "{err}");
}

#[test]
fn line_column_counts_characters_from_one() {
    assert_eq!(line_column("abc", 0), (1, 1));
    assert_eq!(line_column("ab\ncd", 4), (2, 2));
    assert_eq!(line_column("é\nx", 3), (2, 1));
    // Past the end, or inside a multi-byte character: still a position.
    assert_eq!(line_column("ab", 99), (1, 3));
    assert_eq!(line_column("é", 1), (1, 1));
}

#[test]
fn base_url_with_credentials_or_query_is_refused_without_showing_the_password() {
    let p = problems("[digicert]\nbase_url = \"https://bob:pw99@www.digicert.com/services/v2\"\n");
    assert_eq!(p[0].key, "digicert.base_url");
    assert!(!p[0].message.contains("pw99"), "{}", p[0].message);
    let p = problems("[digicert]\nbase_url = \"https://www.digicert.com/services/v2?key=abc\"\n");
    assert_eq!(p[0].key, "digicert.base_url");
    assert!(!p[0].message.contains("abc"), "{}", p[0].message);
}

#[test]
fn unparseable_urls_are_shown_with_credentials_hidden() {
    assert_eq!(shown_url("not a url"), "\"not a url\"");
    assert_eq!(
        shown_url("https://bob:pw@[::1/x?token=t"),
        "\"https://[redacted]@[::1/x?[redacted]\""
    );
    assert_eq!(shown_url("bob:pw@host"), "\"[redacted]@host\"");
    let p = problems(
        "[[sinks]]\nname = \"w\"\ntype = \"webhook\"\nurl = \"https://bob:hunter2@[::1/\"\nsecret_env = \"S\"\n",
    );
    assert_eq!(p[0].key, "sinks[0] (\"w\").url");
    assert!(p[0].message.contains("[::1/"), "{}", p[0].message);
    assert!(!p[0].message.contains("hunter2"), "{}", p[0].message);
}

#[test]
fn a_missing_config_file_says_how_to_name_one_and_shows_the_cause_once() {
    let err = Config::load(Path::new("/nonexistent/orderwatch.toml")).unwrap_err();
    let shown = format!("{:#}", anyhow::Error::new(err));
    assert!(shown.contains("/nonexistent/orderwatch.toml"), "{shown}");
    assert!(shown.contains("--config"), "{shown}");
    assert_eq!(shown.matches("No such file").count(), 1, "{shown}");
}

#[test]
fn debug_of_a_config_shows_no_secret_or_password() {
    let c = parse(
        "[digicert]\napi_key_env = \"KEY_VAR\"\n[[sinks]]\nname = \"w\"\ntype = \"webhook\"\nurl = \"https://bob:hunter2@hooks.example.net/x?token=tok9\"\nsecret_env = \"HOOK_VAR\"\n",
    )
    .unwrap();
    let shown = format!("{c:?} {c:#?}");
    assert!(
        !shown.contains("hunter2") && !shown.contains("tok9"),
        "{shown}"
    );
    assert!(
        shown.contains("KEY_VAR") && shown.contains("HOOK_VAR"),
        "{shown}"
    );
}

#[test]
fn the_default_answer_cap_is_256_mib() {
    assert_eq!(parse("").unwrap().digicert.max_response_bytes, 256 << 20);
    let c = parse("[digicert]\nmax_response_size = \"1KiB\"\n").unwrap();
    assert_eq!(c.digicert.max_response_bytes, 1024);
}

#[test]
fn durations_beyond_a_century_are_refused_not_overflowed() {
    for (key, text) in [
        (
            "poll.initial_lookback",
            "[poll]\ninitial_lookback = \"18446744073709551615s\"\n",
        ),
        (
            "poll.overlap",
            "[poll]\noverlap = \"18446744073709551615s\"\n",
        ),
        ("poll.interval", "[poll]\ninterval = \"101y\"\n"),
        ("digicert.timeout", "[digicert]\ntimeout = \"500000000y\"\n"),
        (
            "sinks[0] (\"f\").give_up_after",
            "[[sinks]]\nname = \"f\"\ntype = \"stdout\"\ngive_up_after = \"36600d\"\n",
        ),
    ] {
        let p = problems(text);
        assert!(
            p.iter()
                .any(|p| p.key == key && p.message.contains("longer than the 100 years")),
            "{key}: {p:?}"
        );
    }
    assert!(parse("[poll]\ninitial_lookback = \"99y\"\n").is_ok());
}

/// Arbitrary and adversarial config text: `Config::parse` (what `check`,
/// `run` and SIGHUP use), `check`'s own inspection and the first window
/// plan built on a config that passed never panic. Documents are built
/// from the real key set with values of the right type and hostile
/// content, so most cases get past TOML and serde into validation.
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    /// What TOML type a key takes: a value of another type is only a
    /// (well-tested) serde error, so most values are of the right type and
    /// hostile in content, to reach validation.
    #[derive(Debug, Clone, Copy)]
    enum Kind {
        Text,
        Number,
        Flag,
        List,
        /// `max_response_size`: a number or a text.
        Size,
    }

    use Kind::*;

    const DIGICERT: &[(&str, Kind)] = &[
        ("base_url", Text),
        ("instance", Text),
        ("api_key_env", Text),
        ("api_key_file", Text),
        ("timeout", Text),
        ("timezone", Text),
        ("max_requests_per_minute", Number),
        ("max_response_size", Size),
        ("allow_insecure_http", Flag),
        ("retries", Number),
        ("retry_initial", Text),
        ("retry_max", Text),
    ];
    const POLL: &[(&str, Kind)] = &[
        ("interval", Text),
        ("overlap", Text),
        ("initial_lookback", Text),
        ("max_window", Text),
    ];
    const STORE: &[(&str, Kind)] = &[("path", Text)];
    const METRICS: &[(&str, Kind)] = &[("listen", Text)];
    const EVENTS: &[(&str, Kind)] = &[("dedupe", Text)];
    const ENRICH: &[(&str, Kind)] = &[
        ("order_details", Flag),
        ("statuses", List),
        ("max_share", Number),
        ("give_up_after", Text),
    ];
    const WAKE: &[(&str, Kind)] = &[
        ("listen", Text),
        ("min_gap", Text),
        ("key_env", Text),
        ("key_file", Text),
        ("header", Text),
    ];
    const SINK: &[(&str, Kind)] = &[
        ("name", Text),
        ("type", Text),
        ("statuses", List),
        ("url", Text),
        ("secret_env", Text),
        ("secret_file", Text),
        ("timeout", Text),
        ("backoff_initial", Text),
        ("backoff_max", Text),
        ("give_up_after", Text),
        ("concurrency", Number),
        ("path", Text),
    ];

    /// Texts that mean something to some key; `@TMP@` becomes a scratch
    /// directory, so `check` may create files only there.
    const TEXTS: &[&str] = &[
        "https://www.digicert.com/services/v2",
        "http://127.0.0.1:1/services/v2",
        "http://localhost/",
        "http://api.example.net/v2",
        "ftp://x",
        "https://u:p@h/?q=1#f",
        "https://",
        "eu",
        "us",
        "mars",
        "webhook",
        "file",
        "stdout",
        "kafka",
        "America/Denver",
        "Not/AZone",
        "127.0.0.1:0",
        "[::1]:99999",
        "OW_FUZZ_UNSET",
        "PATH",
        "@TMP@/orderwatch.db",
        "@TMP@/sub/events.jsonl",
        "@TMP@",
        "@TMP@/sub",
        "@TMP@/missing/x",
        "@TMP@/credentials",
        "",
        " ",
        "a/b",
        "hook-1",
        "256MiB",
        "1KiB",
        "0",
        "7d",
        "8d",
        "1h",
        "0s",
        "1ns",
        "18446744073709551615s",
        "584542046091y",
        "100y",
        "99y",
    ];

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            6 => proptest::sample::select(TEXTS).prop_map(str::to_string),
            // Durations and sizes, plausible or absurd.
            4 => r"[0-9]{1,24} ?(ns|ms|s|m|min|h|d|w|y|years|KiB|MiB|GiB|KB|B)?",
            2 => any::<String>(),
        ]
        .prop_map(|t| toml::Value::String(t).to_string())
    }

    fn number() -> impl Strategy<Value = String> {
        prop_oneof![
            8 => proptest::sample::select(&[0i64, 1, 8, 180, 181, 256, 257, u32::MAX as i64][..]),
            1 => any::<i64>(),
        ]
        .prop_map(|n| n.to_string())
    }

    /// Any TOML value, for a key given the wrong type.
    fn anything() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            text(),
            number(),
            any::<bool>().prop_map(|b| b.to_string()),
            (-1e300f64..1e300).prop_map(|f| format!("{f:?}")),
            Just("nan".to_string()),
            Just("1979-05-27T07:32:00Z".to_string()),
        ];
        leaf.prop_recursive(2, 12, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4)
                    .prop_map(|v| format!("[{}]", v.join(", "))),
                proptest::collection::btree_map("[a-z_]{1,8}", inner, 0..3).prop_map(|kv| {
                    let body: Vec<String> = kv.iter().map(|(k, v)| format!("{k} = {v}")).collect();
                    format!("{{ {} }}", body.join(", "))
                }),
            ]
        })
    }

    fn value_of(kind: Kind) -> BoxedStrategy<String> {
        let typed = match kind {
            Text => text().boxed(),
            Number => number().boxed(),
            Flag => any::<bool>().prop_map(|b| b.to_string()).boxed(),
            List => proptest::collection::vec(text(), 0..4)
                .prop_map(|v| format!("[{}]", v.join(", ")))
                .boxed(),
            Size => prop_oneof![text(), number()].boxed(),
        };
        prop_oneof![40 => typed, 1 => anything()].boxed()
    }

    /// `key = value` lines for a table: each real key at most once (a
    /// repeated key is only a TOML error), now and then an unknown one.
    fn entries(keys: &'static [(&'static str, Kind)]) -> impl Strategy<Value = String> {
        let lines: Vec<BoxedStrategy<Option<String>>> = keys
            .iter()
            .map(|(k, kind)| {
                proptest::option::weighted(0.4, value_of(*kind))
                    .prop_map(move |v| v.map(|v| format!("{k} = {v}\n")))
                    .boxed()
            })
            .collect();
        let unknown = proptest::option::weighted(
            0.05,
            (r"[a-z_]{1,12}", anything()).prop_map(|(k, v)| format!("x_{k} = {v}\n")),
        );
        (lines, unknown).prop_map(|(lines, unknown)| {
            lines
                .into_iter()
                .flatten()
                .chain(unknown)
                .collect::<String>()
        })
    }

    fn document() -> impl Strategy<Value = String> {
        (
            proptest::option::weighted(0.8, entries(DIGICERT)),
            proptest::option::weighted(0.8, entries(POLL)),
            proptest::option::weighted(0.8, entries(STORE)),
            proptest::option::weighted(0.3, entries(METRICS)),
            proptest::option::weighted(0.3, entries(EVENTS)),
            proptest::option::weighted(0.3, entries(WAKE)),
            proptest::option::weighted(0.3, entries(ENRICH)),
            proptest::collection::vec(entries(SINK), 0..4),
            proptest::option::weighted(0.03, "[a-z\\[\\]\"= \n]{0,40}"),
        )
            .prop_map(|(d, p, s, m, e, w, x, sinks, junk)| {
                let mut out = String::new();
                let tables = [
                    ("digicert", d),
                    ("poll", p),
                    ("store", s),
                    ("metrics", m),
                    ("events", e),
                    ("wake", w),
                    ("enrich", x),
                ];
                for (name, body) in tables {
                    if let Some(body) = body {
                        out.push_str(&format!("[{name}]\n{body}"));
                    }
                }
                for s in sinks {
                    out.push_str(&format!("[[sinks]]\n{s}"));
                }
                out.push_str(&junk.unwrap_or_default());
                out
            })
    }

    fn scratch() -> &'static std::path::Path {
        static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
        DIR.get_or_init(|| {
            let d = tempfile::tempdir().unwrap();
            std::fs::create_dir(d.path().join("sub")).unwrap();
            d
        })
        .path()
    }

    fn fuzz_env(k: &str) -> Option<String> {
        match k {
            "STATE_DIRECTORY" => Some(scratch().display().to_string()),
            "CREDENTIALS_DIRECTORY" => Some(scratch().join("credentials").display().to_string()),
            _ => None,
        }
    }

    /// Every path the config would let `check` touch lies in the scratch dir.
    fn confined(c: &Config) -> bool {
        let inside =
            |p: &Path| p.starts_with(scratch()) && !p.components().any(|c| c.as_os_str() == "..");
        let secret_inside = |s: &SecretSource| match s {
            SecretSource::File(p) => inside(p),
            SecretSource::Credential { dir, .. } => inside(dir),
            SecretSource::Env(_) => true,
        };
        let store_inside = match &c.store {
            StoreConfig::Sqlite { path } => inside(path),
            StoreConfig::Postgres(pg) => pg.password.as_ref().is_none_or(secret_inside),
        };
        store_inside
            && secret_inside(&c.digicert.api_key)
            && c.wake
                .as_ref()
                .and_then(|w| w.key.as_ref())
                .is_none_or(secret_inside)
            && c.sinks.iter().all(|s| {
                s.settings.files().iter().all(|p| inside(p))
                    && s.settings
                        .secrets()
                        .iter()
                        .all(|(_, src)| secret_inside(src))
            })
    }

    fn parse_and_check(text: &str) {
        let text = text.replace("@TMP@", &scratch().display().to_string());
        match Config::parse(&text, Path::new("fuzz.toml"), &fuzz_env) {
            Ok(c) => {
                // A first start plans its catch-up from these settings.
                let plan =
                    crate::window::plan(None, chrono::Utc::now(), &c.poll, c.digicert.timezone);
                assert!(!plan.is_empty());
                if confined(&c) {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    let _ = runtime.block_on(crate::cmd::check::inspect(&c));
                }
            }
            Err(e) => {
                // Errors render (with the file named) and never echo a
                // whole line of the input.
                let shown = e.to_string();
                assert!(shown.starts_with("fuzz.toml"), "{shown}");
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn arbitrary_text_never_panics(text in any::<String>()) {
            parse_and_check(&text);
        }

        #[test]
        fn arbitrary_bytes_read_as_text_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            parse_and_check(&String::from_utf8_lossy(&bytes));
        }

    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn documents_of_real_keys_with_hostile_values_never_panic(text in document()) {
            parse_and_check(&text);
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        for open in ["[", "{a="] {
            let close = if open == "[" { "]" } else { "}" };
            let text = format!(
                "[poll]\ninterval = {}1{}\n",
                open.repeat(100_000),
                close.repeat(100_000)
            );
            assert!(Config::parse(&text, Path::new("fuzz.toml"), &fuzz_env).is_err());
        }
    }
}

#[test]
fn an_operational_sink_with_a_status_filter_is_refused_naming_the_key() {
    let p = problems(
        "[[sinks]]\nname = \"ops\"\ntype = \"stdout\"\noperational = true\nstatuses = [\"issued\"]\n",
    );
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].key, "sinks[0] (\"ops\").statuses");
    assert!(p[0].message.contains("operational"), "{}", p[0].message);
    let c = parse("[[sinks]]\nname = \"ops\"\ntype = \"stdout\"\noperational = true\n").unwrap();
    assert!(c.sinks[0].operational);
    assert!(
        !parse("[[sinks]]\nname = \"a\"\ntype = \"stdout\"\n")
            .unwrap()
            .sinks[0]
            .operational
    );
}

#[test]
fn alerts_poll_failures_defaults_to_3_and_takes_1_to_10000() {
    assert_eq!(parse("").unwrap().alerts.poll_failures, 3);
    for n in [1, 10_000] {
        let c = parse(&format!("[alerts]\npoll_failures = {n}\n")).unwrap();
        assert_eq!(c.alerts.poll_failures, n);
    }
    for bad in ["0", "-1", "10001", "4294967297"] {
        let p = problems(&format!("[alerts]\npoll_failures = {bad}\n"));
        assert_eq!(p.len(), 1, "{bad}: {p:?}");
        assert_eq!(p[0].key, "alerts.poll_failures");
        assert!(p[0].message.contains(bad), "{}", p[0].message);
    }
}

#[test]
fn a_kind_key_of_the_wrong_type_is_named() {
    let cases = [
        (
            "type = \"webhook\"\nurl = \"https://h.example/x\"\nsecret_env = \"S\"\ntimeout = 10",
            "timeout",
            "integer `10`",
        ),
        (
            "type = \"webhook\"\nurl = \"https://h.example/x\"\nsecret_env = \"S\"\nconcurrency = \"8\"",
            "concurrency",
            "string \"8\"",
        ),
        ("type = \"file\"\npath = 1", "path", "integer `1`"),
        (
            "type = \"exec\"\ncommand = \"/bin/true\"",
            "command",
            "string \"/bin/true\"",
        ),
    ];
    for (keys, key, value) in cases {
        let text = format!("[[sinks]]\nname = \"c\"\n{keys}\n");
        let found = problems(&text);
        let wanted = format!("sinks[0] (\"c\").{key}");
        assert!(
            found.iter().any(|p| p.key == wanted
                && p.message.contains("invalid type")
                && p.message.contains(value)),
            "{keys}: {found:?}"
        );
    }
}
