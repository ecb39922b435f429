//! Saved plans (`plan --out FILE`, `sync --plan FILE`): the plan a
//! reviewer approved, with what it was made from, so that the sync after
//! the merge runs exactly that plan or nothing. The desired-state digest
//! says the repository is the one planned; the observed digest says the
//! cluster is in the state planned from.

use serde::{Deserialize, Serialize};

use super::Plan;
use crate::state::ObservedState;

/// The file's `format` field.
pub const SAVED_PLAN_FORMAT: &str = "plimsoll-saved-plan/v1";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedPlan {
    pub format: String,
    /// The stack (`name:`) planned.
    pub stack: String,
    /// The commit planned, when read from git.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// Sha-256 of everything a sync applies (values, charts, versions,
    /// patches).
    pub desired_digest: String,
    /// [`observed_digest`] of the state planned from.
    pub observed_digest: String,
    pub plan: Plan,
}

/// Sha-256 of the observed state the plan depends on. Ready-replica
/// counts are left out: a pod restarting between the review and the sync
/// does not change what the plan does (the sync waits for readiness
/// anyway).
pub fn observed_digest(observed: &ObservedState) -> String {
    let mut o = observed.clone();
    for s in &mut o.statefulsets {
        s.ready_replicas = 0;
    }
    for d in &mut o.deployments {
        d.ready_replicas = 0;
    }
    // Order-independent: the API server lists in no promised order.
    o.releases
        .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    o.statefulsets
        .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    o.pvcs
        .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    o.storage_classes.sort_by(|a, b| a.name.cmp(&b.name));
    o.deployments
        .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    o.resources.sort_by(|a, b| a.target.cmp(&b.target));
    o.health.sort_by(|a, b| a.target.cmp(&b.target));
    crate::journal::digest(serde_json::to_string(&o).unwrap_or_default().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{DeploymentState, ObservedState};

    #[test]
    fn readiness_and_order_do_not_move_the_digest_but_a_size_does() {
        let dep = |name: &str, ready: u32| DeploymentState {
            name: name.into(),
            namespace: "n".into(),
            release: None,
            replicas: 2,
            ready_replicas: ready,
        };
        let a = ObservedState {
            deployments: vec![dep("a", 2), dep("b", 2)],
            ..Default::default()
        };
        let b = ObservedState {
            deployments: vec![dep("b", 1), dep("a", 0)],
            ..Default::default()
        };
        assert_eq!(observed_digest(&a), observed_digest(&b));
        let mut c = a.clone();
        c.deployments[0].replicas = 3;
        assert_ne!(observed_digest(&a), observed_digest(&c));
        // The saved plan reads back as written.
        let saved = SavedPlan {
            format: SAVED_PLAN_FORMAT.into(),
            stack: "s".into(),
            revision: None,
            desired_digest: "d".into(),
            observed_digest: observed_digest(&a),
            plan: Plan::default(),
        };
        let text = serde_json::to_string(&saved).unwrap();
        assert_eq!(serde_json::from_str::<SavedPlan>(&text).unwrap(), saved);
    }
}
