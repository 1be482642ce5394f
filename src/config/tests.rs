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
        c.store.path,
        PathBuf::from("/var/lib/orderwatch/orderwatch.db")
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
