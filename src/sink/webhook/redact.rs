//! Keeping a receiver URL's credentials out of every message: the endpoint
//! as shown (scheme, host, port, path), and every form a credential of the
//! URL could take in an answer echoed back.

use base64::Engine;

/// `scheme://host:port/path`: a URL without user info, query or fragment.
pub(super) fn endpoint(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or("?");
    match url.port() {
        Some(port) => format!("{}://{host}:{port}{}", url.scheme(), url.path()),
        None => format!("{}://{host}{}", url.scheme(), url.path()),
    }
}

/// The secret-bearing parts of a URL, as they could appear in a message:
/// user, password, the Basic credentials built from them, the query and
/// each query value. Strings under 4 characters are left alone: blanking
/// them would garble messages and hide nothing worth hiding.
pub(super) fn credentials(url: &reqwest::Url) -> Vec<String> {
    let decode = |s: &str| {
        percent_decode(s)
            .filter(|d| d != s)
            .into_iter()
            .chain([s.to_string()])
            .collect::<Vec<_>>()
    };
    let mut out = Vec::new();
    let user = url.username();
    let password = url.password().unwrap_or_default();
    out.extend(decode(user));
    out.extend(decode(password));
    if !user.is_empty() || !password.is_empty() {
        let plain_user = percent_decode(user).unwrap_or_else(|| user.to_string());
        let plain_password = percent_decode(password).unwrap_or_else(|| password.to_string());
        out.push(
            base64::engine::general_purpose::STANDARD
                .encode(format!("{plain_user}:{plain_password}")),
        );
    }
    if let Some(q) = url.query() {
        out.push(q.to_string());
        for (_, v) in url.query_pairs() {
            out.push(v.into_owned());
        }
        for pair in q.split('&') {
            if let Some((_, v)) = pair.split_once('=') {
                out.extend(decode(v));
            }
        }
    }
    out.retain(|s| s.chars().count() >= 4);
    // Longest first, so a credential is blanked whole before any part of it.
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out.dedup();
    out
}

/// `%XX`-decodes `s`; `None` if it is not valid UTF-8 afterwards.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                let (h, l) = (hex(h).unwrap_or(0), hex(l).unwrap_or(0));
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> reqwest::Url {
        reqwest::Url::parse(s).unwrap()
    }

    #[test]
    fn the_endpoint_shows_neither_user_info_nor_query() {
        let u = url("https://hook%20user:p%40ss@hooks.example.net:8443/in/digicert?token=s3cret#x");
        assert_eq!(endpoint(&u), "https://hooks.example.net:8443/in/digicert");
        assert_eq!(
            endpoint(&url("http://127.0.0.1/hook")),
            "http://127.0.0.1/hook"
        );
    }

    #[test]
    fn every_form_of_a_url_credential_is_hidden() {
        let u = url("https://hookuser:p%40ssword@hooks.example.net/in?token=s3cr%2Bt&v=1");
        let hidden = credentials(&u);
        for needle in [
            "hookuser",
            "p@ssword",
            "p%40ssword",
            "s3cr+t",
            "s3cr%2Bt",
            "token=s3cr%2Bt&v=1",
            // What reqwest sends as `Authorization: Basic ...`.
            &base64::engine::general_purpose::STANDARD.encode("hookuser:p@ssword"),
        ] {
            assert!(
                hidden.iter().any(|h| h == needle),
                "{needle} not in {hidden:?}"
            );
        }
        assert!(!hidden.iter().any(|h| h == "1"), "short values stay");
        assert!(credentials(&url("https://hooks.example.net/in")).is_empty());
    }

    #[test]
    fn percent_decoding_handles_plain_escaped_and_broken_input() {
        assert_eq!(percent_decode("a%2Bb").as_deref(), Some("a+b"));
        assert_eq!(percent_decode("plain").as_deref(), Some("plain"));
        assert_eq!(percent_decode("100%").as_deref(), Some("100%"));
        assert_eq!(percent_decode("%zz").as_deref(), Some("%zz"));
        assert_eq!(percent_decode("%ff"), None);
    }
}
