//! A sink as the store sees it: a name, a status filter and how its
//! deliveries are kept. The daemon computes routes once per configuration
//! generation from the sink configs, so the store never reads a sink config.

/// Which transitions go to a sink, and how the store keeps its deliveries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkRoute {
    pub name: String,
    /// Lower-case statuses; `None` takes all.
    pub statuses: Option<Vec<String>>,
    /// In-order sinks (file, stdout) deliver one batch at a time in recorded
    /// order, so "everything after seq N is pending" replaces a row per
    /// event: the store keeps a cursor for them. Others keep a row per event.
    pub by_cursor: bool,
    /// An operational sink (`operational = true`): it receives orderwatch's
    /// own alerts (see `store/alert.rs`) and no transitions.
    pub operational: bool,
}

impl SinkRoute {
    /// Whether an event with this status goes to this sink.
    pub fn wants(&self, status: &str) -> bool {
        match &self.statuses {
            None => true,
            Some(list) => list.iter().any(|s| s.eq_ignore_ascii_case(status)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_without_a_filter_takes_every_status_and_filters_ignore_case() {
        let all = SinkRoute {
            name: "a".into(),
            statuses: None,
            by_cursor: false,
            operational: false,
        };
        assert!(all.wants("whatever"));
        let some = SinkRoute {
            statuses: Some(vec!["issued".into()]),
            ..all
        };
        assert!(some.wants("ISSUED"));
        assert!(!some.wants("pending"));
    }
}
