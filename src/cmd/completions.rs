//! `orderwatch completions SHELL`: the completion script for a shell, made
//! from the same clap definitions that parse the command line, so it cannot
//! drift from them. The .deb ships the same scripts, generated at build time
//! by `build.rs`.

use clap::CommandFactory;
use clap_complete::Shell;

use super::Failure;
use crate::cli::{Cli, CompletionShell};

pub fn run(shell: CompletionShell) -> Result<(), Failure> {
    let shell = match shell {
        CompletionShell::Bash => Shell::Bash,
        CompletionShell::Zsh => Shell::Zsh,
        CompletionShell::Fish => Shell::Fish,
    };
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "orderwatch", &mut script);
    // A closed pipe (`orderwatch completions bash | head`) is not worth a
    // panic; any other write error is.
    use std::io::Write;
    match std::io::stdout().lock().write_all(&script) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Failure::runtime(
            anyhow::Error::new(e).context("cannot write the completion script to stdout"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(shell: Shell) -> String {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "orderwatch", &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn every_script_knows_every_subcommand_and_the_global_flags() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let s = script(shell);
            for word in [
                "run",
                "check",
                "cancel",
                "events",
                "deliveries",
                "redeliver",
                "simulate",
                "demo",
                "completions",
                // Flags without their dashes: fish writes `-l config`.
                "config",
                "log-format",
                "drain-timeout",
                "page-size",
            ] {
                assert!(s.contains(word), "{shell:?} script lacks {word}");
            }
        }
    }
}
