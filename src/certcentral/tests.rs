//! The client against the simulator: Retry-After bounds and stale relative windows.

use super::*;
use crate::config::SecretSource;
use crate::simulator::{Simulator, SimulatorConfig};

fn client(base_url: &str) -> Client {
    let cfg = DigicertConfig {
        base_url: base_url.to_string(),
        api_key: SecretSource::Env("UNUSED".into()),
        timeout: Duration::from_secs(5),
        timezone: chrono_tz::America::Denver,
        max_requests_per_minute: 180,
        max_response_bytes: 1 << 20,
        retries: 0,
        retry_initial: Duration::from_millis(10),
        retry_max: Duration::from_millis(10),
        ca_file: None,
    };
    Client::new(&cfg, Secret::new("sim-key"), Arc::new(Pacer::new(180))).unwrap()
}

#[tokio::test]
async fn an_absurd_retry_after_is_cut_to_the_maximum() {
    let sim = Simulator::start(SimulatorConfig::default()).await.unwrap();
    let c = client(&sim.base_url());
    sim.push_fault(crate::simulator::Fault::Respond {
        status: 429,
        headers: vec![("Retry-After".into(), u64::MAX.to_string())],
        body: String::new(),
    });
    let window = Window::Relative {
        since: Utc::now() - chrono::TimeDelta::minutes(5),
    };
    let err = c.status_changes(&window).await.unwrap_err();
    assert_eq!(err.code(), "http_429");
    assert_eq!(err.retry_after(), Some(MAX_RETRY_AFTER));
    // The pacer takes it without overflowing its clock.
    c.pacer.back_off(err.retry_after().unwrap());
}

#[tokio::test]
async fn a_relative_window_past_seven_days_is_not_sent_capped() {
    let sim = Simulator::start(SimulatorConfig::default()).await.unwrap();
    let c = client(&sim.base_url());
    let week = chrono::TimeDelta::days(7);
    let stale = Window::Relative {
        since: Utc::now() - week - chrono::TimeDelta::seconds(2),
    };
    let err = c.status_changes(&stale).await.unwrap_err();
    assert_eq!(err.code(), "window_expired");
    assert!(!err.is_transient());
    assert!(sim.queries().is_empty(), "a capped window was sent");

    let fresh = Window::Relative {
        since: Utc::now() - week + chrono::TimeDelta::seconds(30),
    };
    c.status_changes(&fresh).await.unwrap();
    assert_eq!(sim.queries().len(), 1);
}
