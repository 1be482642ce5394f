//! `type = "exec"`: runs a command per event, certspotter-style.
//!
//! `command` is an argument list, never a shell line, so nothing in an event
//! can be interpreted by a shell. The event's JSON goes to stdin; its id,
//! order, status and previous status go to `ORDERWATCH_*` variables. The
//! environment is otherwise cleared (only `PATH`, the locale, `TZ` and what
//! `pass_env` names get through): the daemon's own environment may hold the
//! DigiCert API key or a webhook secret, which a hook has no business seeing.
//!
//! Exit 0 is delivered; any other exit, a signal or the `timeout` is retried
//! with the sink's backoff, except the codes in `dead_exit_codes`, which are
//! dead at once (a hook saying "this event is not for me, never again").

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

mod run;

use super::kind::{
    Batch, BuildContext, BuildError, Kind, Message, Outcome, Sent, Sink, SinkSettings,
};
use crate::config::table::SinkTable;
use crate::event::write_event;
use crate::store::OutboxEntry;
use run::{Ending, Invocation, Ran};

pub static KIND: Kind = Kind {
    name: "exec",
    parse,
};

/// Variables of the daemon's environment a command always gets, if set.
const KEPT_ENV: &[&str] = &["PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ"];
/// `PATH` when the daemon has none.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Keys {
    command: Option<Vec<String>>,
    timeout: Option<String>,
    concurrency: Option<u32>,
    dead_exit_codes: Option<Vec<i64>>,
    pass_env: Option<Vec<String>>,
}

#[derive(Debug)]
struct Settings {
    /// As configured: absolute, or a name looked up in `PATH` by `build`.
    program: PathBuf,
    args: Vec<String>,
    timeout: Duration,
    concurrency: usize,
    dead_exit_codes: HashSet<i32>,
    pass_env: Vec<String>,
}

fn parse(table: &mut SinkTable<'_>) -> Option<Arc<dyn SinkSettings>> {
    let keys: Keys = table.keys()?;
    let timeout = table.positive("timeout", keys.timeout.as_deref(), Duration::from_secs(30));
    let concurrency = table.count("concurrency", keys.concurrency, 1, 1, 64);
    let mut dead_exit_codes = HashSet::new();
    for code in keys.dead_exit_codes.unwrap_or_default() {
        match i32::try_from(code) {
            Ok(c @ 1..=255) => {
                dead_exit_codes.insert(c);
            }
            _ => table.problem(
                "dead_exit_codes",
                format!("{code} is not an exit code of a failure; use 1 to 255 (0 is success)"),
            ),
        }
    }
    let pass_env = keys.pass_env.unwrap_or_default();
    if let Some(bad) = pass_env
        .iter()
        .find(|v| v.is_empty() || v.contains('=') || v.starts_with("ORDERWATCH_"))
    {
        table.problem(
            "pass_env",
            format!(
                "{bad:?} is not a variable name orderwatch can pass on (no '=', not ORDERWATCH_*)"
            ),
        );
    }
    let (program, args) = match keys.command.unwrap_or_default().split_first() {
        None => {
            table.problem(
                "command",
                "missing or empty; an exec sink needs the program and its arguments as a list, e.g. [\"/usr/local/bin/on-cert-event\", \"--flag\"]",
            );
            return None;
        }
        Some((program, args)) => (PathBuf::from(program), args.to_vec()),
    };
    if program.is_relative() && program.components().count() > 1 {
        table.problem(
            "command",
            format!(
                "{:?} is a relative path; give an absolute path, or a bare name found in PATH",
                program.display().to_string()
            ),
        );
        return None;
    }
    Some(Arc::new(Settings {
        program,
        args,
        timeout,
        concurrency,
        dead_exit_codes,
        pass_env,
    }))
}

impl SinkSettings for Settings {
    fn kind(&self) -> &'static str {
        KIND.name
    }

    fn describe(&self) -> String {
        format!(
            "exec {} (concurrency {}, timeout {})",
            shown_command(&self.program, &self.args),
            self.concurrency,
            humantime::format_duration(self.timeout)
        )
    }

    /// Finds the program and checks that it is an executable file; runs nothing.
    fn build(&self, ctx: &BuildContext<'_>) -> Result<Arc<dyn Sink>, BuildError> {
        let path_var = std::env::var("PATH").unwrap_or_else(|_| DEFAULT_PATH.to_string());
        let program =
            executable(&self.program, &path_var).map_err(|e| BuildError::key("command", e))?;
        Ok(Arc::new(ExecSink {
            name: ctx.name.to_string(),
            program,
            args: self.args.clone(),
            timeout: self.timeout,
            concurrency: self.concurrency,
            dead_exit_codes: self.dead_exit_codes.clone(),
            base_env: base_env(&self.pass_env, &|k| std::env::var(k).ok()),
            source: ctx.source.to_string(),
        }))
    }
}

/// `/usr/local/bin/hook --flag`, for messages.
fn shown_command(program: &Path, args: &[String]) -> String {
    let mut all = vec![program.display().to_string()];
    all.extend(args.iter().cloned());
    all.join(" ")
}

/// The program as it will be run: `program` itself if absolute, else the
/// first match in `path_var`; it must be a file someone may execute.
fn executable(program: &Path, path_var: &str) -> Result<PathBuf, String> {
    let found = if program.is_absolute() {
        program.to_path_buf()
    } else {
        std::env::split_paths(path_var)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                format!(
                    "{:?} is not found in PATH ({path_var}); give its absolute path",
                    program.display().to_string()
                )
            })?
    };
    let shown = found.display().to_string();
    let meta = std::fs::metadata(&found).map_err(|e| format!("{shown:?}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{shown:?} is not a file"));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(format!(
            "{shown:?} is not executable; chmod +x it (the sink runs it directly, not through a shell)"
        ));
    }
    Ok(found)
}

/// The environment every run starts from: the kept and passed variables
/// that are set, and `PATH` in any case.
fn base_env(pass_env: &[String], env: &dyn Fn(&str) -> Option<String>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = KEPT_ENV
        .iter()
        .map(|k| k.to_string())
        .chain(pass_env.iter().cloned())
        .filter_map(|k| env(&k).map(|v| (k, v)))
        .collect();
    if !out.iter().any(|(k, _)| k == "PATH") {
        out.push(("PATH".to_string(), DEFAULT_PATH.to_string()));
    }
    out
}

struct ExecSink {
    name: String,
    program: PathBuf,
    args: Vec<String>,
    timeout: Duration,
    concurrency: usize,
    dead_exit_codes: HashSet<i32>,
    base_env: Vec<(String, String)>,
    source: String,
}

/// The `ORDERWATCH_*` variables of one event. A missing value (no previous
/// status; no order for a test event) is an empty string, so `set -u`
/// scripts can read every one.
fn event_env(message: &Message<'_>, sink: &str) -> Vec<(String, String)> {
    let text = |v: Option<&str>| v.unwrap_or_default().to_string();
    vec![
        ("ORDERWATCH_EVENT_ID".into(), message.id.to_string()),
        ("ORDERWATCH_EVENT_TYPE".into(), message.kind.to_string()),
        (
            "ORDERWATCH_ORDER_ID".into(),
            message.order_id.map(|o| o.to_string()).unwrap_or_default(),
        ),
        ("ORDERWATCH_STATUS".into(), text(message.status)),
        (
            "ORDERWATCH_PREVIOUS_STATUS".into(),
            text(message.previous_status),
        ),
        ("ORDERWATCH_SINK".into(), sink.to_string()),
    ]
}

impl ExecSink {
    async fn run_one(&self, entry: &OutboxEntry) -> Outcome {
        let mut body = Vec::with_capacity(320);
        write_event(&mut body, &entry.transition, &self.source);
        let t = &entry.transition;
        let id = t.event_id();
        let message = Message {
            id: &id,
            kind: crate::event::EVENT_TYPE,
            body: &body,
            order_id: Some(t.order_id),
            status: Some(&t.status),
            previous_status: t.previous_status.as_deref(),
        };
        self.run_message(&message).await.outcome
    }

    /// Runs the command for one message; the answer is its exit and output.
    async fn run_message(&self, message: &Message<'_>) -> Sent {
        let mut stdin = Vec::with_capacity(message.body.len() + 1);
        stdin.extend_from_slice(message.body);
        stdin.push(b'\n');
        let mut env = self.base_env.clone();
        env.extend(event_env(message, &self.name));
        let ran = run::run(&Invocation {
            program: &self.program,
            args: &self.args,
            env,
            stdin: &stdin,
            timeout: self.timeout,
        })
        .await;
        let outcome = judge(&ran, &self.dead_exit_codes, &self.program, self.timeout);
        let answer = match &outcome {
            Outcome::Delivered => {
                if ran.output_len > 0 {
                    tracing::info!(sink = %self.name, event = %message.id, output = %ran.output_line(), "command output");
                }
                format!("exit 0; output: {}", ran.output_line())
            }
            Outcome::Retry { error, .. } | Outcome::Dead { error } | Outcome::Gone { error } => {
                error.clone()
            }
        };
        Sent { outcome, answer }
    }
}

/// What a run means for the delivery. Pure.
fn judge(ran: &Ran, dead_codes: &HashSet<i32>, program: &Path, timeout: Duration) -> Outcome {
    let program = program.display();
    let output = ran.output_line();
    let retry = |error: String| Outcome::Retry {
        error,
        retry_after: None,
    };
    match &ran.ending {
        Ending::NotStarted(why) => retry(format!("cannot run {program}: {why}")),
        Ending::TimedOut => retry(format!(
            "{program} did not finish within {}; its process group was killed; output: {output}",
            humantime::format_duration(timeout)
        )),
        Ending::Exited(status) => match (
            status.code(),
            std::os::unix::process::ExitStatusExt::signal(status),
        ) {
            (Some(0), _) => Outcome::Delivered,
            (Some(code), _) if dead_codes.contains(&code) => Outcome::Dead {
                error: format!(
                    "{program} exited with {code} (listed in dead_exit_codes); output: {output}"
                ),
            },
            (Some(code), _) => retry(format!("{program} exited with {code}; output: {output}")),
            (None, Some(sig)) => retry(format!(
                "{program} was killed by signal {sig}; output: {output}"
            )),
            (None, None) => retry(format!(
                "{program} ended abnormally ({status}); output: {output}"
            )),
        },
    }
}

#[async_trait]
impl Sink for ExecSink {
    async fn deliver(&self, batch: Batch) -> Vec<Outcome> {
        let mut out = Vec::with_capacity(batch.len());
        for e in batch.iter() {
            out.push(self.run_one(e).await);
        }
        out
    }

    async fn send(&self, message: &Message<'_>) -> Sent {
        self.run_message(message).await
    }

    fn batch_size(&self) -> usize {
        1
    }

    fn concurrency(&self) -> usize {
        self.concurrency
    }
}

#[cfg(test)]
mod tests;
