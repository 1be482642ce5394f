//! `orderwatch check --online`: what only the network can tell. One
//! authenticated request to CertCentral (is the key right, and for this
//! instance?), and a connection to each sink's destination without
//! delivering anything. Plain `check` stays offline: it runs as the unit's
//! `ExecStartPre=`, where a receiver being down must not stop the start.

use std::sync::Arc;

use super::Findings;
use crate::certcentral::{ApiError, Client};
use crate::config::Config;
use crate::pacer::Pacer;
use crate::sink;

/// Everything reached, and every failure, together.
pub async fn reach(config: &Config) -> Findings {
    let mut found = Findings::default();
    digicert(config, &mut found).await;
    for s in &config.sinks {
        // `check` has just built every sink, so this only fails if something
        // changed in between; say so rather than hide it.
        let reached = match sink::build_guest(s, &config.digicert.base_url) {
            Ok(built) => built.reach().await,
            Err(e) => Err(e.render(&format!("sink {}", s.name))),
        };
        match reached {
            Ok(Some(what)) => found.lines.push(format!("sink {}: {what}", s.name)),
            Ok(None) => found.lines.push(format!(
                "sink {}: nothing to connect to ({})",
                s.name,
                s.settings.kind()
            )),
            Err(e) => found.problems.push(format!("sink {}: {e}", s.name)),
        }
    }
    found
}

/// One `status-changes` request for the last minute, sent once.
async fn digicert(config: &Config, found: &mut Findings) {
    let d = &config.digicert;
    let Ok(key) = d.api_key.load_header() else {
        // Offline `check` already refused an unreadable key.
        return;
    };
    let pacer = Arc::new(Pacer::new(d.max_requests_per_minute));
    let answer = match Client::new(d, key, pacer) {
        Ok(client) => client.probe().await,
        Err(e) => Err(e),
    };
    match answer {
        Ok(n) => found.lines.push(format!(
            "digicert: {} accepted the API key ({n} order(s) changed in the last minute)",
            d.base_url
        )),
        Err(e) => found.problems.push(explain(&d.base_url, &e)),
    }
}

/// What an operator should do about a failed probe. Pure.
fn explain(base_url: &str, e: &ApiError) -> String {
    match e {
        ApiError::Api {
            code,
            message,
            status,
            ..
        } if matches!(*status, 401 | 403) || code == "invalid_api_key" => format!(
            "digicert: {base_url} refused the API key: {code}: {message} (HTTP {status}); check the key, and that the account lives on this instance: \
             CertCentral US is https://www.digicert.com/services/v2 ([digicert] instance = \"us\"), Europe is \
             https://certcentral.digicert.eu/services/v2 (instance = \"eu\"), and a key works only on its own"
        ),
        ApiError::Api {
            code,
            message,
            status,
            ..
        } => format!("digicert: {base_url} answered HTTP {status}: {code}: {message}"),
        other => format!("digicert: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_key_names_the_code_and_both_instances() {
        let e = ApiError::Api {
            url: "u".into(),
            status: 401,
            code: "invalid_api_key".into(),
            message: "The API key provided is not valid.".into(),
            retry_after: None,
        };
        let text = explain("https://www.digicert.com/services/v2", &e);
        assert!(
            text.contains("refused the API key: invalid_api_key"),
            "{text}"
        );
        assert!(text.contains("instance = \"eu\""), "{text}");
        let e = ApiError::Network {
            url: "https://x".into(),
            detail: "connection refused".into(),
        };
        assert_eq!(
            explain("https://x", &e),
            "digicert: cannot reach https://x: connection refused"
        );
    }
}
