//! Every sink kind orderwatch knows: one line each. Adding a kind is its
//! own file implementing `kind.rs` and a line here.

use super::kind::Kind;
use super::{exec, file, nats, stdout, webhook};

/// The kinds, in the order `--help` and error messages list them.
pub static KINDS: &[&Kind] = &[
    &webhook::KIND,
    &stdout::KIND,
    &file::KIND,
    &exec::KIND,
    &nats::KIND,
];

/// The kind called `name` (as in `type = "..."`).
pub fn find(name: &str) -> Option<&'static Kind> {
    KINDS.iter().copied().find(|k| k.name == name)
}

/// `"webhook", "stdout", "file", "exec" or "nats"`, for messages.
pub fn names() -> String {
    let quoted: Vec<String> = KINDS.iter().map(|k| format!("{:?}", k.name)).collect();
    match quoted.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_found_by_its_name_and_listed() {
        for k in KINDS {
            assert_eq!(find(k.name).map(|f| f.name), Some(k.name));
        }
        assert!(find("carrier-pigeon").is_none());
        assert_eq!(
            names(),
            "\"webhook\", \"stdout\", \"file\", \"exec\" or \"nats\""
        );
    }
}
