//! The sync journal: which plan a sync is executing and which of its steps
//! are done, kept in a ConfigMap per stack so that a killed sync resumes
//! from its first incomplete step. This module is the pure part (what is
//! recorded and how it reads back); [`crate::execute`] stores it.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::plan::{Plan, Step};

/// Version of the journal's ConfigMap layout.
pub const JOURNAL_SCHEMA_VERSION: u32 = 1;

/// Where a sync stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JournalStatus {
    Running,
    Succeeded,
    Failed,
}

impl JournalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JournalStatus::Running => "running",
            JournalStatus::Succeeded => "succeeded",
            JournalStatus::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Option<JournalStatus> {
        match s {
            "running" => Some(JournalStatus::Running),
            "succeeded" => Some(JournalStatus::Succeeded),
            "failed" => Some(JournalStatus::Failed),
            _ => None,
        }
    }
}

/// One step of the plan being executed, as recorded.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JournalStep {
    /// Stable identity: `RELEASE/INDEX/KIND/OBJECT`.
    pub id: String,
    pub release: String,
    /// The release's stage: releases of one stage run side by side.
    /// Empty in journals from before concurrency (each release then
    /// counts as a stage of its own).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stage: String,
    /// The step as the planner made it (JSON, secrets already redacted).
    pub step: serde_json::Value,
}

/// The journal of one stack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Journal {
    /// What the plan was computed for (the rendered desired state).
    pub desired_digest: String,
    /// The git revision, when known.
    pub revision: Option<String>,
    pub plan_digest: String,
    pub steps: Vec<JournalStep>,
    /// Ids of the completed steps, in the order they completed.
    pub completed: Vec<String>,
    pub status: JournalStatus,
    /// Why a failed sync stopped.
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
#[error("journal ConfigMap is unreadable: {0}")]
pub struct JournalError(String);

impl JournalError {
    pub fn from_message(message: String) -> JournalError {
        JournalError(message)
    }
}

/// Sha-256 of bytes, hex.
pub fn digest(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn step_object(step: &Step) -> String {
    match step {
        Step::ExpandPvc { pvc, .. }
        | Step::WaitForExpansion { pvc, .. }
        | Step::WaitForOperatorExpansion { pvc, .. } => pvc.clone(),
        Step::PatchResource { target, .. } | Step::ChangeListElement { target, .. } => {
            format!("{}/{}", target.kind, target.name)
        }
        Step::WaitForGone { resource, .. } => format!("{}/{}", resource.kind, resource.name),
        Step::RecreateStatefulSet { statefulset, .. } => statefulset.clone(),
        Step::HelmUpgrade { release, .. }
        | Step::WaitForReady { release, .. }
        | Step::WaitForHealthy { release, .. } => release.clone(),
    }
}

/// The journal's name for a step's kind.
pub fn step_kind(step: &Step) -> &'static str {
    match step {
        Step::ExpandPvc { .. } => "expand-pvc",
        Step::WaitForExpansion { .. } => "wait-for-expansion",
        Step::PatchResource { .. } => "patch-resource",
        Step::RecreateStatefulSet { .. } => "recreate-stateful-set",
        Step::HelmUpgrade { .. } => "helm-upgrade",
        Step::WaitForReady { .. } => "wait-for-ready",
        Step::WaitForHealthy { .. } => "wait-for-healthy",
        Step::WaitForOperatorExpansion { .. } => "wait-for-operator-expansion",
        Step::ChangeListElement { .. } => "change-list-element",
        Step::WaitForGone { .. } => "wait-for-gone",
    }
}

impl Journal {
    /// A fresh journal for `plan`, nothing done yet.
    pub fn new(plan: &Plan, desired_digest: &str, revision: Option<&str>) -> Journal {
        let mut steps = Vec::new();
        for r in &plan.releases {
            for (i, s) in r.steps.iter().enumerate() {
                steps.push(JournalStep {
                    id: format!(
                        "{}/{}/{}/{}",
                        r.release,
                        i + 1,
                        step_kind(s),
                        step_object(s)
                    ),
                    release: r.release.clone(),
                    stage: r.stage.clone(),
                    step: serde_json::to_value(s).unwrap_or_default(),
                });
            }
        }
        let plan_digest = digest(serde_json::to_string(&steps).unwrap_or_default().as_bytes());
        Journal {
            desired_digest: desired_digest.to_string(),
            revision: revision.map(str::to_string),
            plan_digest,
            steps,
            completed: Vec::new(),
            status: JournalStatus::Running,
            message: String::new(),
        }
    }

    /// Whether the recorded steps are the ones the plan digest was made
    /// of (a hand-edited or damaged journal is not).
    pub fn is_intact(&self) -> bool {
        digest(
            serde_json::to_string(&self.steps)
                .unwrap_or_default()
                .as_bytes(),
        ) == self.plan_digest
    }

    /// The first step not yet completed.
    pub fn next_step(&self) -> Option<&JournalStep> {
        self.steps.iter().find(|s| !self.completed.contains(&s.id))
    }

    pub fn is_complete(&self) -> bool {
        self.next_step().is_none()
    }

    /// Whether a sync of `desired_digest` continues this journal (same
    /// desired state, not finished) rather than planning afresh.
    pub fn resumes(&self, desired_digest: &str) -> bool {
        self.desired_digest == desired_digest
            && self.status != JournalStatus::Succeeded
            && !self.is_complete()
    }

    /// The ConfigMap `data` that stores it.
    pub fn to_data(&self) -> BTreeMap<String, String> {
        let mut d = BTreeMap::new();
        d.insert("schema".into(), JOURNAL_SCHEMA_VERSION.to_string());
        d.insert("desired-digest".into(), self.desired_digest.clone());
        d.insert("revision".into(), self.revision.clone().unwrap_or_default());
        d.insert("plan-digest".into(), self.plan_digest.clone());
        d.insert(
            "steps".into(),
            serde_json::to_string_pretty(&self.steps).unwrap_or_default(),
        );
        d.insert("completed".into(), self.completed.join("\n"));
        d.insert("status".into(), self.status.as_str().into());
        d.insert("message".into(), self.message.clone());
        d
    }

    pub fn from_data(data: &BTreeMap<String, String>) -> Result<Journal, JournalError> {
        let get = |k: &str| {
            data.get(k)
                .cloned()
                .ok_or_else(|| JournalError(format!("missing {k}")))
        };
        let schema = get("schema")?;
        if schema != JOURNAL_SCHEMA_VERSION.to_string() {
            return Err(JournalError(format!("unknown schema {schema}")));
        }
        let steps: Vec<JournalStep> =
            serde_json::from_str(&get("steps")?).map_err(|e| JournalError(e.to_string()))?;
        let status = get("status")?;
        Ok(Journal {
            desired_digest: get("desired-digest")?,
            revision: Some(get("revision")?).filter(|r| !r.is_empty()),
            plan_digest: get("plan-digest")?,
            steps,
            completed: get("completed")?
                .lines()
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect(),
            status: JournalStatus::parse(&status)
                .ok_or_else(|| JournalError(format!("unknown status {status}")))?,
            message: data.get("message").cloned().unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::ReleasePlan;

    fn plan() -> Plan {
        Plan {
            releases: vec![ReleasePlan {
                release: "data".into(),
                namespace: "ns".into(),
                stage: "data".into(),
                steps: vec![
                    Step::ExpandPvc {
                        namespace: "ns".into(),
                        pvc: "data-db-0".into(),
                        from: "10Gi".into(),
                        to: "15Gi".into(),
                        storage_class: "fast".into(),
                    },
                    Step::WaitForReady {
                        namespace: "ns".into(),
                        release: "data".into(),
                        statefulsets: vec!["db".into()],
                        deployments: vec![],
                        daemonsets: vec![],
                        resources: vec![],
                        timeout_seconds: None,
                    },
                ],
                pvcs: vec![],
                objects: vec![],
            }],
            ..Plan::default()
        }
    }

    #[test]
    fn round_trips_through_config_map_data_and_resumes_where_it_stopped() {
        let mut j = Journal::new(&plan(), "d1", Some("abc"));
        assert_eq!(j.steps[0].id, "data/1/expand-pvc/data-db-0");
        assert_eq!(j.next_step().unwrap().id, "data/1/expand-pvc/data-db-0");
        j.completed.push(j.steps[0].id.clone());
        let back = Journal::from_data(&j.to_data()).unwrap();
        assert_eq!(back, j);
        assert!(back.is_intact());
        assert_eq!(back.next_step().unwrap().id, "data/2/wait-for-ready/data");
        assert!(back.resumes("d1"));
        assert!(!back.resumes("d2"), "a new desired state plans afresh");
        j.completed.push(j.steps[1].id.clone());
        assert!(!j.resumes("d1"), "a finished journal is not resumed");
    }

    #[test]
    fn plan_digest_depends_on_the_steps() {
        let a = Journal::new(&plan(), "d", None);
        let mut p = plan();
        p.releases[0].steps.pop();
        let b = Journal::new(&p, "d", None);
        assert_ne!(a.plan_digest, b.plan_digest);
        assert_eq!(a.plan_digest, Journal::new(&plan(), "x", None).plan_digest);
    }

    #[test]
    fn an_edited_step_breaks_the_digest() {
        let j = Journal::new(&plan(), "d", None);
        let mut d = j.to_data();
        let edited = d["steps"].replace("15Gi", "1Gi");
        d.insert("steps".into(), edited);
        let back = Journal::from_data(&d).unwrap();
        assert!(!back.is_intact());
    }

    #[test]
    fn a_damaged_journal_is_an_error_not_a_fresh_start() {
        let mut d = Journal::new(&plan(), "d", None).to_data();
        d.insert("status".into(), "exploded".into());
        assert!(Journal::from_data(&d).is_err());
        d.remove("steps");
        assert!(Journal::from_data(&d).is_err());
    }
}
