//! This node's role among the nodes sharing its store, and how it shows:
//! the `STATUS=` line, `/healthz` and the `orderwatch_leader` gauge.
//!
//! On SQLite there is one node and no roles ([`Role::Sole`]): the status
//! line and `/healthz` read exactly as they did before roles existed. On
//! PostgreSQL a node leads or stands by, and `/healthz` answers a JSON
//! object naming its role and the leader, so a load balancer, a monitor or
//! a person tells the leader from the standbys at a glance. A healthy
//! standby answers 200: it is doing its job, which is to wait.

use std::sync::{Arc, RwLock};

use serde_json::json;

use crate::store::Leader;

/// What this node does now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// The only daemon its store allows (SQLite): it always leads.
    Sole,
    /// Connected, not yet known to lead or stand by.
    Joining,
    /// It polls and delivers, fenced by `term`.
    Leader { term: i64 },
    /// It waits to take over from `leader` (`None`: nobody leads yet).
    /// `trouble` says why it could not look at the store last time.
    Standby {
        leader: Option<Leader>,
        trouble: Option<String>,
    },
}

impl Role {
    /// The `STATUS=` line of a leading node, around what it is doing
    /// (`polling every 1m, cursor lag 12s, ...`).
    pub fn leading_status(&self, activity: &str) -> String {
        match self {
            Role::Leader { term } => format!("leader (term {term}), {activity}"),
            _ => activity.to_string(),
        }
    }

    /// The `STATUS=` line of a node that does not lead.
    pub fn waiting_status(&self) -> String {
        match self {
            Role::Standby {
                trouble: Some(why), ..
            } => format!("standby, cannot reach the store: {why}"),
            Role::Standby {
                leader: Some(l), ..
            } if l.live => format!("standby, leader is {} (term {})", l.holder, l.term),
            Role::Standby {
                leader: Some(l), ..
            } => format!(
                "standby, leader is {} (term {}) but it stopped renewing its lease; taking over",
                l.holder, l.term
            ),
            Role::Standby { leader: None, .. } => "standby, no node leads yet".to_string(),
            Role::Joining => "connected; looking for the leader".to_string(),
            Role::Sole | Role::Leader { .. } => "leading".to_string(),
        }
    }
}

/// The role, shared between the daemon (which changes it) and the
/// `/healthz` endpoint (which shows it).
#[derive(Debug, Clone)]
pub struct RoleCell(Arc<RwLock<Role>>);

impl RoleCell {
    pub fn new(role: Role) -> RoleCell {
        RoleCell(Arc::new(RwLock::new(role)))
    }

    pub fn get(&self) -> Role {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set(&self, role: Role) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = role;
    }
}

/// What `/healthz` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// 200 when true, 503 otherwise.
    pub ok: bool,
    /// JSON (a node with roles) or one line of text (SQLite).
    pub json: bool,
    pub body: String,
}

/// `/healthz` of `node` in `role`. `polls` is the poll health of a leading
/// node (`Ok(reason)` while polls succeed, [`crate::metrics::Metrics::health`]).
///
/// * Sole: that reason as one line of text, 200 or 503, as always.
/// * Leader: the same verdict and reason, as JSON with its role and term.
/// * Standby: 200 while it can watch the store (it can take over), 503
///   while it cannot reach it.
pub fn health(role: &Role, node: &str, polls: Result<String, String>) -> Health {
    let (ok, body) = match role {
        Role::Sole => {
            let ok = polls.is_ok();
            let reason = polls.unwrap_or_else(|e| e);
            return Health {
                ok,
                json: false,
                body: format!("{reason}\n"),
            };
        }
        Role::Leader { term } => {
            let ok = polls.is_ok();
            let reason = polls.unwrap_or_else(|e| e);
            let body = json!({"role": "leader", "node": node, "leader": node, "term": term, "status": reason});
            (ok, body)
        }
        Role::Standby { leader, trouble } => {
            let status = match trouble {
                Some(why) => format!("unhealthy: cannot reach the store: {why}"),
                None => "ok: standing by".to_string(),
            };
            let body = json!({
                "role": "standby",
                "node": node,
                "leader": leader.as_ref().map(|l| l.holder.as_str()),
                "term": leader.as_ref().map(|l| l.term),
                "status": status,
            });
            (trouble.is_none(), body)
        }
        Role::Joining => {
            let body = json!({"role": "joining", "node": node, "leader": null, "term": null,
                "status": "starting: looking for the leader"});
            (true, body)
        }
    };
    Health {
        ok,
        json: true,
        body: format!("{body}\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leader(live: bool) -> Leader {
        Leader {
            holder: "db-1:4711".into(),
            term: 4,
            since: chrono::DateTime::UNIX_EPOCH,
            live,
        }
    }

    fn parse(h: &Health) -> serde_json::Value {
        assert!(h.json);
        serde_json::from_str(&h.body).unwrap()
    }

    #[test]
    fn a_sole_node_answers_as_before_roles_existed() {
        let ok = health(
            &Role::Sole,
            "n:1",
            Ok("ok: last successful poll 3s ago".into()),
        );
        assert_eq!(
            ok,
            Health {
                ok: true,
                json: false,
                body: "ok: last successful poll 3s ago\n".into()
            }
        );
        let bad = health(&Role::Sole, "n:1", Err("unhealthy: x".into()));
        assert!(!bad.ok && bad.body == "unhealthy: x\n");
        assert_eq!(
            Role::Sole.leading_status("polling every 1m"),
            "polling every 1m"
        );
    }

    #[test]
    fn the_leader_names_itself_and_keeps_the_poll_verdict() {
        let role = Role::Leader { term: 7 };
        let ok = health(
            &role,
            "db-2:9",
            Ok("ok: last successful poll 1s ago".into()),
        );
        assert!(ok.ok);
        let v = parse(&ok);
        assert_eq!(v["role"], "leader");
        assert_eq!(v["leader"], "db-2:9");
        assert_eq!(v["term"], 7);
        assert_eq!(v["status"], "ok: last successful poll 1s ago");
        let bad = health(
            &role,
            "db-2:9",
            Err("unhealthy: last successful poll 200s ago".into()),
        );
        assert!(!bad.ok);
        assert_eq!(
            parse(&bad)["status"],
            "unhealthy: last successful poll 200s ago"
        );
        assert_eq!(
            role.leading_status("polling every 1m"),
            "leader (term 7), polling every 1m"
        );
    }

    #[test]
    fn a_standby_is_healthy_while_it_can_watch_the_store() {
        let role = Role::Standby {
            leader: Some(leader(true)),
            trouble: None,
        };
        let h = health(&role, "db-2:9", Err("no polls on a standby".into()));
        assert!(h.ok);
        let v = parse(&h);
        assert_eq!(v["role"], "standby");
        assert_eq!(v["leader"], "db-1:4711");
        assert_eq!(v["term"], 4);
        assert_eq!(
            role.waiting_status(),
            "standby, leader is db-1:4711 (term 4)"
        );

        let cut_off = Role::Standby {
            leader: None,
            trouble: Some("connection refused".into()),
        };
        let h = health(&cut_off, "db-2:9", Ok(String::new()));
        assert!(!h.ok);
        assert_eq!(parse(&h)["leader"], serde_json::Value::Null);
        assert_eq!(
            cut_off.waiting_status(),
            "standby, cannot reach the store: connection refused"
        );
        let stale = Role::Standby {
            leader: Some(leader(false)),
            trouble: None,
        };
        assert!(stale.waiting_status().contains("taking over"));
    }
}
