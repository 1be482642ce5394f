//! Where log lines go and how they look. Everything goes to stderr, but
//! stderr is one of three things, and each wants different lines:
//!
//! * a terminal: coloured, timestamped human lines;
//! * the systemd journal (`JOURNAL_STREAM` names stderr's device and inode):
//!   each line starts with an sd-daemon `<N>` priority prefix, which journald
//!   strips and stores as the entry's priority, so `journalctl -p err` finds
//!   errors; no timestamp (the journal stamps every entry) and no colour;
//! * anything else (a file, a pipe, a log shipper): plain timestamped lines,
//!   never colour codes.
//!
//! `--log-format json` keeps one JSON object per line everywhere; under the
//! journal it gets the same prefix, so the stored message is still pure JSON
//! and the priority is still right.

use std::io::IsTerminal;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::fmt::format::{self, FormatEvent, FormatFields, Writer};
use tracing_subscriber::registry::LookupSpan;

use crate::cli::LogFormat;

/// What stderr is connected to, which decides the shape of every line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stderr {
    Terminal,
    Journal,
    Other,
}

impl Stderr {
    /// Looks at the process's stderr and environment.
    pub fn detect() -> Stderr {
        let journal_stream = std::env::var("JOURNAL_STREAM").ok();
        if journal_stream.is_some_and(|v| is_journal_stream(&v, stderr_identity())) {
            Stderr::Journal
        } else if std::io::stderr().is_terminal() {
            Stderr::Terminal
        } else {
            Stderr::Other
        }
    }
}

/// `(device, inode)` of the file stderr refers to, if it can be stat'ed.
fn stderr_identity() -> Option<(u64, u64)> {
    let fd = std::io::stderr().as_fd().try_clone_to_owned().ok()?;
    let meta = std::fs::File::from(fd).metadata().ok()?;
    Some((meta.dev(), meta.ino()))
}

/// systemd sets `JOURNAL_STREAM=<device>:<inode>` (decimal) for a service
/// whose stdout or stderr is connected to the journal. Inherited by a child
/// whose stderr was redirected elsewhere, it no longer matches: then the
/// lines are not going to the journal and must not carry prefixes.
fn is_journal_stream(value: &str, stderr: Option<(u64, u64)>) -> bool {
    let Some((dev, ino)) = value.trim().split_once(':') else {
        return false;
    };
    match (dev.parse::<u64>(), ino.parse::<u64>(), stderr) {
        (Ok(dev), Ok(ino), Some(actual)) => (dev, ino) == actual,
        _ => false,
    }
}

/// The sd-daemon(3) priority for a tracing level: err, warning, info, debug.
fn priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// Installs the global subscriber for `format`, shaped for `stderr`. The
/// level comes from `RUST_LOG` (default `info`).
pub fn init(format: LogFormat, stderr: Stderr) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let colour =
        stderr == Stderr::Terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour);
    // `try_init`: a second call (tests in one process) keeps the first.
    let _ = match (format, stderr) {
        (LogFormat::Text, Stderr::Journal) => builder
            .event_format(Prioritized(format::format().without_time()))
            .try_init(),
        (LogFormat::Json, Stderr::Journal) => builder
            .event_format(Prioritized(format::format().json()))
            .fmt_fields(format::JsonFields::new())
            .try_init(),
        (LogFormat::Text, _) => builder.try_init(),
        (LogFormat::Json, _) => builder.json().try_init(),
    };
}

/// A command's final error, at error priority like every other error line:
/// `error: …` in text (what people and scripts look for), an event with the
/// exit code in JSON (shippers expect every line to be JSON).
pub fn fatal(format: LogFormat, stderr: Stderr, exit_code: u8, error: &anyhow::Error) {
    match format {
        LogFormat::Json => tracing::error!(exit_code, "{error:#}"),
        LogFormat::Text => eprint!("{}", prefixed(stderr, &format!("error: {error:#}"))),
    }
}

/// `text` (one or more lines) as error lines for `stderr`: each line gets
/// the `<3>` prefix under the journal, so none of them lands at info.
pub fn prefixed(stderr: Stderr, text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for line in text.lines() {
        if stderr == Stderr::Journal {
            out.push_str("<3>");
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Wraps an event format so that every line of an event carries the
/// event's sd-daemon priority. journald applies a prefix to its own line
/// only, so a multi-line message is prefixed line by line.
struct Prioritized<F>(F);

impl<S, N, F> FormatEvent<S, N> for Prioritized<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        // A writer over a String has no ANSI support: no colour, whatever
        // the layer was told.
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        let n = priority(event.metadata().level());
        // The level is padded for columns (" INFO"); the journal has none.
        for (i, l) in line.lines().enumerate() {
            let l = if i == 0 { l.trim_start() } else { l };
            writeln!(writer, "<{n}>{l}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_journal_stream_matches_only_the_same_device_and_inode() {
        assert!(is_journal_stream("8:12345", Some((8, 12345))));
        assert!(is_journal_stream("8:12345\n", Some((8, 12345))));
        assert!(!is_journal_stream("8:12345", Some((8, 12346))));
        assert!(!is_journal_stream("9:12345", Some((8, 12345))));
        // Inherited but stderr cannot be stat'ed, or garbage: not the journal.
        assert!(!is_journal_stream("8:12345", None));
        assert!(!is_journal_stream("", Some((8, 12345))));
        assert!(!is_journal_stream("8", Some((8, 12345))));
        assert!(!is_journal_stream("x:y", Some((8, 12345))));
        assert!(!is_journal_stream("-1:5", Some((0, 5))));
    }

    #[test]
    fn levels_map_to_journal_priorities() {
        assert_eq!(priority(&Level::ERROR), 3);
        assert_eq!(priority(&Level::WARN), 4);
        assert_eq!(priority(&Level::INFO), 6);
        assert_eq!(priority(&Level::DEBUG), 7);
        assert_eq!(priority(&Level::TRACE), 7);
    }

    #[test]
    fn every_line_of_a_fatal_error_is_an_error_under_the_journal() {
        let text = "bad config:\n  - one\n  - two";
        assert_eq!(
            prefixed(Stderr::Journal, text),
            "<3>bad config:\n<3>  - one\n<3>  - two\n"
        );
        assert_eq!(prefixed(Stderr::Other, text), format!("{text}\n"));
        assert_eq!(prefixed(Stderr::Terminal, "x"), "x\n");
    }
}
