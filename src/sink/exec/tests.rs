//! The exec sink's pure parts: finding the program, the environment it
//! gets, and what an ending means for the delivery.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use super::run::{Ending, Ran};
use super::*;

fn ran(ending: Ending, output: &str) -> Ran {
    Ran {
        ending,
        output: output.as_bytes().to_vec(),
        output_len: output.len() as u64,
    }
}

fn kind(o: &Outcome) -> &'static str {
    match o {
        Outcome::Delivered => "delivered",
        Outcome::Retry { .. } => "retry",
        Outcome::Dead { .. } => "dead",
        Outcome::Gone { .. } => "gone",
    }
}

#[test]
fn exit_0_delivers_listed_codes_are_dead_and_everything_else_retries() {
    let dead: HashSet<i32> = [3, 75].into_iter().collect();
    let prog = Path::new("/usr/local/bin/hook");
    let t = Duration::from_secs(30);
    let judge_exit = |raw: i32| {
        judge(
            &ran(Ending::Exited(ExitStatus::from_raw(raw)), "out"),
            &dead,
            prog,
            t,
        )
    };
    assert_eq!(judge_exit(0), Outcome::Delivered);
    assert_eq!(kind(&judge_exit(1 << 8)), "retry");
    assert_eq!(kind(&judge_exit(3 << 8)), "dead");
    assert_eq!(kind(&judge_exit(75 << 8)), "dead");
    assert_eq!(kind(&judge_exit(libc::SIGKILL)), "retry");
    let Outcome::Dead { error } = judge_exit(3 << 8) else {
        unreachable!()
    };
    assert_eq!(
        error,
        "/usr/local/bin/hook exited with 3 (listed in dead_exit_codes); output: out"
    );
    let Outcome::Retry { error, .. } = judge_exit(libc::SIGKILL) else {
        unreachable!()
    };
    assert!(error.contains("killed by signal 9"), "{error}");
    let Outcome::Retry { error, .. } = judge(&ran(Ending::TimedOut, "half"), &dead, prog, t) else {
        unreachable!()
    };
    assert!(
        error.contains("did not finish within 30s; its process group was killed; output: half"),
        "{error}"
    );
    let Outcome::Retry { error, .. } = judge(
        &ran(Ending::NotStarted("Permission denied".into()), ""),
        &dead,
        prog,
        t,
    ) else {
        unreachable!()
    };
    assert_eq!(error, "cannot run /usr/local/bin/hook: Permission denied");
}

#[test]
fn the_program_must_be_found_and_executable() {
    let dir = tempfile::tempdir().unwrap();
    let hook = dir.path().join("hook");
    std::fs::write(&hook, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = executable(&hook, "").unwrap_err();
    assert!(err.contains("is not executable; chmod +x"), "{err}");
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(executable(&hook, "").unwrap(), hook);
    // A bare name is looked up in PATH, first match wins.
    let path_var = format!("/nonexistent:{}", dir.path().display());
    assert_eq!(executable(Path::new("hook"), &path_var).unwrap(), hook);
    let err = executable(Path::new("nohook"), &path_var).unwrap_err();
    assert!(err.contains("not found in PATH"), "{err}");
    let err = executable(&dir.path().join("missing"), "").unwrap_err();
    assert!(err.contains("No such file"), "{err}");
    let err = executable(dir.path(), "").unwrap_err();
    assert!(err.contains("is not a file"), "{err}");
}

#[test]
fn the_environment_holds_path_the_locale_and_passed_variables_only() {
    let env = |k: &str| match k {
        "LANG" => Some("C.UTF-8".to_string()),
        "DIGICERT_API_KEY" => Some("secret".to_string()),
        "DEPLOY_TOKEN_FILE" => Some("/etc/t".to_string()),
        _ => None,
    };
    let got = base_env(
        &["DEPLOY_TOKEN_FILE".to_string(), "UNSET".to_string()],
        &env,
    );
    assert_eq!(
        got,
        vec![
            ("LANG".to_string(), "C.UTF-8".to_string()),
            ("DEPLOY_TOKEN_FILE".to_string(), "/etc/t".to_string()),
            ("PATH".to_string(), DEFAULT_PATH.to_string()),
        ]
    );
}

#[test]
fn every_event_variable_is_set_and_a_missing_value_is_empty() {
    let message = Message {
        id: "264:issued",
        kind: crate::event::EVENT_TYPE,
        body: b"{}",
        order_id: Some(264),
        status: Some("issued"),
        previous_status: None,
    };
    let env: std::collections::HashMap<String, String> =
        event_env(&message, "hook").into_iter().collect();
    assert_eq!(env["ORDERWATCH_EVENT_ID"], "264:issued");
    assert_eq!(env["ORDERWATCH_ORDER_ID"], "264");
    assert_eq!(env["ORDERWATCH_STATUS"], "issued");
    assert_eq!(env["ORDERWATCH_PREVIOUS_STATUS"], "");
    assert_eq!(env["ORDERWATCH_SINK"], "hook");
    assert_eq!(env["ORDERWATCH_EVENT_TYPE"], crate::event::EVENT_TYPE);
    let test = Message {
        order_id: None,
        status: None,
        ..message
    };
    let env: std::collections::HashMap<String, String> =
        event_env(&test, "hook").into_iter().collect();
    assert_eq!(env["ORDERWATCH_ORDER_ID"], "");
    assert_eq!(env["ORDERWATCH_STATUS"], "");
}
