//! Generates the man page `orderwatch(1)` (clap_mangen) and the bash, zsh
//! and fish completion scripts (clap_complete) from the same clap
//! definitions the binary parses with, so the package can never document a
//! flag the binary does not have.
//!
//! They are written to `OUT_DIR` and copied to `target/<profile>/deb-assets/`,
//! the one place outside `OUT_DIR` this script writes: cargo-deb can name an
//! asset only by a fixed path under `target/release/`, and `OUT_DIR` carries a
//! hash. Nothing in the source tree is touched.
//!
//! It also packs the binary's relative relocations where the C library can
//! load them packed (see [`pack_relative_relocations`]).

use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;

// The CLI definitions, compiled a second time for this script. They use
// only clap, clap_complete and humantime, which are build-dependencies too.
#[allow(dead_code)]
#[path = "src/cli.rs"]
mod cli;

fn main() -> std::io::Result<()> {
    println!("cargo::rerun-if-changed=src/cli.rs");
    println!("cargo::rerun-if-changed=build.rs");
    pack_relative_relocations();
    let out = PathBuf::from(std::env::var_os("OUT_DIR").ok_or_else(|| {
        std::io::Error::other("OUT_DIR is not set; build.rs runs only under cargo")
    })?);
    let mut cmd = cli::Cli::command();
    cmd.build();

    std::fs::write(out.join("orderwatch.1"), man_page(&cmd)?)?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut cmd, "orderwatch", &out)?;
    }

    // OUT_DIR is <target>/<profile>/build/orderwatch-<hash>/out.
    if let Some(profile_dir) = out.ancestors().nth(3) {
        let assets = profile_dir.join("deb-assets");
        std::fs::create_dir_all(&assets)?;
        for name in [
            "orderwatch.1",
            "orderwatch.bash",
            "_orderwatch",
            "orderwatch.fish",
        ] {
            copy_if_changed(&out.join(name), &assets.join(name))?;
        }
    }
    Ok(())
}

/// Links the binary with its relative relocations packed (DT_RELR).
///
/// A position-independent executable carries one relocation entry per
/// pointer the loader must adjust: 1.2 MiB of entries here, read once at
/// start and resident for the rest of the daemon's life. Packed, they take
/// about 20 KiB, which is most of what brings the idle daemon under its
/// 15 MiB target (the benchmark's `daemon: idle RSS` row).
///
/// Only glibc 2.36 and later load packed relocations, and the linker marks
/// the binary as needing such a glibc, so this is done only when building
/// for the machine that builds (the usual `cargo build` and the Debian
/// package) and its glibc is recent enough. Elsewhere the binary is linked
/// as before.
fn pack_relative_relocations() {
    let (host, target) = (std::env::var("HOST"), std::env::var("TARGET"));
    let native = matches!((&host, &target), (Ok(h), Ok(t)) if h == t && t.ends_with("-linux-gnu"));
    if native && glibc_version().is_some_and(|v| v >= (2, 36)) {
        println!("cargo::rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

/// The running glibc's version, as (major, minor).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn glibc_version() -> Option<(u32, u32)> {
    // SAFETY: glibc returns a pointer to a static, NUL-terminated string.
    let version = unsafe { std::ffi::CStr::from_ptr(libc::gnu_get_libc_version()) };
    let mut parts = version.to_str().ok()?.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn glibc_version() -> Option<(u32, u32)> {
    None
}

/// The whole page: clap_mangen's sections for the top level, then one
/// subsection per command with its own synopsis, description and options
/// (clap_mangen alone would only list them as `orderwatch-run(1)` pages that
/// nobody installs), then files, environment and exit status.
fn man_page(cmd: &clap::Command) -> std::io::Result<Vec<u8>> {
    let top = clap_mangen::Man::new(cmd.clone());
    let mut man = Vec::new();
    top.render_title(&mut man)?;
    top.render_name_section(&mut man)?;
    top.render_synopsis_section(&mut man)?;
    top.render_description_section(&mut man)?;
    top.render_options_section(&mut man)?;
    man.extend_from_slice(b".SH COMMANDS\n");
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        let title = format!("orderwatch {}", sub.get_name());
        man.extend_from_slice(format!(".SS \"{title}\"\n").as_bytes());
        // Global flags and --help/--version are described once, above.
        let shared: Vec<String> = sub
            .get_arguments()
            .filter(|a| a.is_global_set() || ["help", "version"].contains(&a.get_id().as_str()))
            .map(|a| a.get_id().to_string())
            .collect();
        let mut sub = sub.clone().bin_name(&title);
        for id in shared {
            sub = sub.mut_arg(id, |a| a.hide(true));
        }
        let page = clap_mangen::Man::new(sub.clone());
        let mut body = Vec::new();
        page.render_synopsis_section(&mut body)?;
        page.render_description_section(&mut body)?;
        if sub.get_arguments().any(|a| !a.is_hide_set()) {
            page.render_options_section(&mut body)?;
        }
        // Their `.SH` headings would end the COMMANDS section: paragraphs.
        let body = String::from_utf8_lossy(&body);
        for line in body.lines() {
            let line = if line.starts_with(".SH") { ".PP" } else { line };
            man.extend_from_slice(line.as_bytes());
            man.push(b'\n');
        }
        if let Some(after) = sub.get_after_help() {
            man.extend_from_slice(preformatted(&after.to_string()).as_bytes());
        }
    }
    man.extend_from_slice(EXTRA.as_bytes());
    Ok(man)
}

/// `text` as a roff paragraph kept line for line (clap_mangen would fill the
/// lines of an after-help into one paragraph).
fn preformatted(text: &str) -> String {
    let mut out = String::from(".PP\n.nf\n");
    for line in text.lines() {
        let line = line.replace('\\', "\\e");
        if line.starts_with('.') || line.starts_with('\'') {
            out.push_str("\\&");
        }
        out.push_str(&line);
        out.push('\n');
    }
    out.push_str(".fi\n");
    out
}

/// Rewrites `to` only when the content differs, so an unchanged build does
/// not touch the file's mtime.
fn copy_if_changed(from: &Path, to: &Path) -> std::io::Result<()> {
    let new = std::fs::read(from)?;
    if std::fs::read(to).ok().as_deref() != Some(&new[..]) {
        std::fs::write(to, new)?;
    }
    Ok(())
}

/// Files, environment and exit status, in roff.
const EXTRA: &str = r#".SH EXAMPLES
.TP
orderwatch demo
A simulator, the daemon and a stdout sink in one process, no configuration needed.
.TP
orderwatch check
Validate /etc/orderwatch/orderwatch.toml after editing it.
.TP
journalctl \-u orderwatch \-p err
The service's errors.
.SH FILES
.TP
/etc/orderwatch/orderwatch.toml
The configuration (annotated example installed by the package). Unknown keys are errors.
.TP
/etc/orderwatch/digicert\-api\-key
The DigiCert API key, root\-only, handed to the service as the systemd credential \fIdigicert\-api\-key\fR.
.TP
/var/lib/orderwatch/orderwatch.db
The store (transitions, cursor, delivery ledger) when \fB[store] path\fR is unset under systemd.
.TP
/lib/systemd/system/orderwatch.service
The systemd unit: \fBsystemctl enable \-\-now orderwatch\fR.
.SH ENVIRONMENT
.TP
ORDERWATCH_CONFIG
The configuration file when \fB\-\-config\fR is not given.
.TP
RUST_LOG
Log level and filters (default \fIinfo\fR).
.TP
STATE_DIRECTORY, CREDENTIALS_DIRECTORY
Set by systemd: where the store and the secrets are.
.TP
JOURNAL_STREAM
Set by systemd: when it names stderr, log lines carry journal priorities and no timestamps.
.TP
NO_COLOR
Never colour log lines (they are coloured only on a terminal anyway).
.SH "EXIT STATUS"
0 success, 1 runtime failure, 2 bad configuration or usage.
.SH "SEE ALSO"
\fBsystemctl\fR(1), \fBjournalctl\fR(1), /usr/share/doc/orderwatch/README.md
"#;
