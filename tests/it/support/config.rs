//! The library's config and daemon constants, for the few checks that
//! cannot be made through the binary.

use std::path::Path;
use std::time::Duration;

use orderwatch::config::Config;

/// How long the daemon gives in-flight deliveries after SIGTERM.
pub const SHUTDOWN_GRACE: Duration = orderwatch::daemon::SHUTDOWN_GRACE;

/// Everything a loaded config shows of itself: `Debug` (plain and pretty)
/// of the config, and `Display` and `Debug` of each secret source and of
/// the secret it loads. None of it may contain a secret.
pub fn shown_by_loaded_config(path: &Path) -> String {
    let config = Config::load(path).expect("config loads");
    let mut shown = format!("{config:?}\n{config:#?}\n");
    for (label, source) in config.secret_sources() {
        let secret = source.load().expect("secret readable");
        shown.push_str(&format!(
            "{label}: {source} {source:?} {secret} {secret:?}\n"
        ));
    }
    shown
}
