//! The simulator's HTTPS mode with a throwaway CA, and the daemon's
//! `[digicert] ca_file`: a poll and a cancel work over HTTPS when the CA is
//! configured, and without it the certificate is refused with an error that
//! says so (never a silent fallback to plain HTTP or to trusting anything).

use chrono::Utc;

use crate::support::sim::{KEY_HEADER, json_of, start_tls};
use crate::support::{KEY, World, ago, text};

#[tokio::test]
async fn the_https_simulator_answers_a_client_trusting_its_ca_and_no_other() {
    let (h, ca) = start_tls().await;
    assert!(
        h.base_url().starts_with("https://127.0.0.1:"),
        "{}",
        h.base_url()
    );
    h.set_status(3, 103, "issued", Utc::now());
    let url = format!(
        "{}/order/certificate/status-changes?minutes=1",
        h.base_url()
    );
    let trusting = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.as_bytes()).expect("CA PEM")])
        .build()
        .expect("client");
    let resp = trusting
        .get(&url)
        .header(KEY_HEADER, KEY)
        .send()
        .await
        .expect("an HTTPS answer");
    assert_eq!(resp.status().as_u16(), 200);
    let body = json_of(resp).await;
    assert_eq!(body["orders"][0]["order_id"], 3);

    let other = reqwest::Client::builder()
        .tls_certs_only(
            webpki_root_certs::TLS_SERVER_ROOT_CERTS
                .iter()
                .filter_map(|c| reqwest::Certificate::from_der(c).ok()),
        )
        .build()
        .expect("client");
    let err = other
        .get(&url)
        .header(KEY_HEADER, KEY)
        .send()
        .await
        .expect_err("a certificate from an unknown CA is refused");
    let chain = format!("{err:?}");
    assert!(chain.contains("UnknownIssuer"), "{chain}");
    // Plain HTTP to the HTTPS port gets no API answer either.
    let plain = url.replacen("https://", "http://", 1);
    let answer = reqwest::Client::new().get(&plain).send().await;
    assert!(answer.is_err(), "{answer:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_and_a_cancel_work_over_https_with_the_ca_in_ca_file() {
    let (h, ca) = start_tls().await;
    let mut w = World::around(h);
    let ca_file = w.path("ca.pem");
    std::fs::write(&ca_file, &ca).expect("write CA");
    w.set("digicert.ca_file", ca_file.display().to_string());
    w.file_sink();
    w.sim.set_status(41, 141, "pending", ago(30));
    w.once();
    assert_eq!(w.file_ids(), vec!["41:pending"]);

    let out = w.run(&["cancel", "41", "--note", "over TLS"]);
    assert!(out.status.success(), "cancel failed: {}", text(&out.stderr));
    assert_eq!(w.sim.status_of(41).as_deref(), Some("canceled"));
    assert_eq!(w.sim.note_of(41).as_deref(), Some("over TLS"));
    w.once();
    assert_eq!(w.file_ids(), vec!["41:pending", "41:canceled"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_ca_the_certificate_is_refused_with_an_error_that_says_so() {
    let (h, _ca) = start_tls().await;
    let addr = h.addr().to_string();
    let mut w = World::around(h);
    w.set("digicert.retries", 0);
    w.file_sink();
    w.sim.set_status(42, 142, "pending", ago(30));
    let out = w.run(&["run", "--once"]);
    assert!(!out.status.success(), "run --once trusted an unknown CA");
    let log = text(&out.stderr);
    assert!(
        log.contains(&addr),
        "the error does not name the URL: {log}"
    );
    assert!(
        log.contains("UnknownIssuer") || log.contains("certificate"),
        "the error does not say the certificate was refused: {log}"
    );
    assert!(w.sim.queries().is_empty(), "a request got through");

    let out = w.run(&["cancel", "42", "--note", "n"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(w.sim.status_of(42).as_deref(), Some("pending"));

    // A ca_file that holds no certificate is a config error naming the key.
    let bogus = w.path("bogus.pem");
    std::fs::write(&bogus, "not a certificate\n").expect("write");
    w.set("digicert.ca_file", bogus.display().to_string());
    let out = w.run(&["check"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        said.contains("digicert.ca_file") && said.contains("bogus.pem"),
        "{said}"
    );
}
