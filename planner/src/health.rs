//! Health: whether a resource Plimsoll changed or waits on is *current*,
//! *in progress* or *failed* (with the reason).
//!
//! In order: a rule the stack file declares for the resource's group and
//! kind (CEL expressions over the object, as Flux's `healthCheckExprs`:
//! the object's top-level fields are variables — `status`, `metadata`,
//! `spec` — and `desired` is the object as the chart renders it); a
//! built-in rule (StatefulSet, Deployment, PVC, Job, and the operators of
//! the seeds: Pravega's `PravegaCluster`, Percona's
//! `PerconaServerMongoDB`, Strimzi's `Kafka`, cStor's `CStorVolumeConfig`,
//! `CStorVolumeReplica` and `CStorVolume`, each from its upstream API);
//! otherwise the kstatus conventions (`observedGeneration`, a `Ready`
//! condition, a `Stalled` one).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A resource's health.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "health", content = "reason", rename_all = "kebab-case")]
pub enum Health {
    Current,
    InProgress(String),
    Failed(String),
}

impl Health {
    pub fn is_current(&self) -> bool {
        matches!(self, Health::Current)
    }

    /// `current`, `in progress: WHY`, `failed: WHY`.
    pub fn describe(&self) -> String {
        match self {
            Health::Current => "current".into(),
            Health::InProgress(why) => format!("in progress: {why}"),
            Health::Failed(why) => format!("failed: {why}"),
        }
    }
}

/// A health rule as the stack file declares it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthRuleSpec {
    /// `group/version` or `group` (`kafka.strimzi.io/v1beta2`); versions
    /// are not compared.
    pub api_version: String,
    pub kind: String,
    /// CEL: true when the resource is current.
    pub current: String,
    /// CEL: true when it failed (checked first).
    #[serde(default)]
    pub failed: Option<String>,
    /// Where the rule is declared (`FILE:LINE:COL`), for errors.
    #[serde(default)]
    pub at: String,
}

/// A rule that does not compile.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{at}: health rule for {kind}: {field}: {message}")]
pub struct RuleError {
    pub at: String,
    pub kind: String,
    pub field: &'static str,
    pub message: String,
}

struct CompiledRule {
    group: String,
    kind: String,
    current: cel::Program,
    failed: Option<cel::Program>,
    text: (String, Option<String>),
}

/// The health rules of a stack: its declared rules, compiled once, and
/// the built-ins.
#[derive(Default)]
pub struct HealthRules {
    custom: Vec<CompiledRule>,
}

impl std::fmt::Debug for HealthRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.custom.iter().map(|r| (&r.kind, &r.text)))
            .finish()
    }
}

fn group_of(api_version: &str) -> &str {
    match api_version.split_once('/') {
        Some((g, _)) => g,
        // `v1`: the core group; a bare group name as written.
        None if api_version.starts_with('v') && api_version[1..].starts_with(char::is_numeric) => {
            ""
        }
        None => api_version,
    }
}

fn compile(
    text: &str,
    spec: &HealthRuleSpec,
    field: &'static str,
) -> Result<cel::Program, RuleError> {
    cel::Program::compile(text).map_err(|e| RuleError {
        at: spec.at.clone(),
        kind: spec.kind.clone(),
        field,
        message: e
            .to_string()
            .lines()
            .next()
            .unwrap_or("does not parse")
            .to_string(),
    })
}

impl HealthRules {
    pub fn compile(specs: &[HealthRuleSpec]) -> Result<HealthRules, RuleError> {
        let custom = specs
            .iter()
            .map(|s| {
                Ok(CompiledRule {
                    group: group_of(&s.api_version).to_string(),
                    kind: s.kind.clone(),
                    current: compile(&s.current, s, "current")?,
                    failed: s
                        .failed
                        .as_deref()
                        .map(|f| compile(f, s, "failed"))
                        .transpose()?,
                    text: (s.current.clone(), s.failed.clone()),
                })
            })
            .collect::<Result<_, RuleError>>()?;
        Ok(HealthRules { custom })
    }

    /// The health of `object` (as read from the cluster); `desired` is the
    /// object as rendered (for rules that compare, e.g. versions).
    pub fn health(&self, object: &Value, desired: Option<&Value>) -> Health {
        let kind = object.get("kind").and_then(Value::as_str).unwrap_or("");
        let group = group_of(
            object
                .get("apiVersion")
                .and_then(Value::as_str)
                .unwrap_or(""),
        );
        if let Some(rule) = self
            .custom
            .iter()
            .find(|r| r.kind == kind && r.group == group)
        {
            return custom_health(rule, object, desired);
        }
        builtin_health(group, kind, object, desired)
    }
}

fn custom_health(rule: &CompiledRule, object: &Value, desired: Option<&Value>) -> Health {
    let mut ctx = cel::Context::default();
    if let Value::Object(m) = object {
        for (k, v) in m {
            if let Ok(v) = cel::to_value(v) {
                ctx.add_variable_from_value(k.as_str(), v);
            }
        }
    }
    for missing in ["status", "metadata", "spec"] {
        if object.get(missing).is_none() {
            ctx.add_variable_from_value(
                missing,
                cel::to_value(serde_json::json!({})).unwrap_or(cel::Value::Null),
            );
        }
    }
    let desired = desired.and_then(|d| cel::to_value(d).ok());
    ctx.add_variable_from_value("desired", desired.unwrap_or(cel::Value::Null));
    let eval = |p: &cel::Program| match p.execute(&ctx) {
        Ok(cel::Value::Bool(b)) => Ok(b),
        Ok(other) => Err(format!("the rule gave {other:?}, not a boolean")),
        // A field not there yet (no status): not current yet.
        Err(e) => Err(e.to_string()),
    };
    if let Some(f) = &rule.failed {
        if let Ok(true) = eval(f) {
            return Health::Failed(format!(
                "{} ({})",
                condition_summary(object)
                    .unwrap_or_else(|| "the rule's failed expression holds".into()),
                rule.text.1.as_deref().unwrap_or_default()
            ));
        }
    }
    match eval(&rule.current) {
        Ok(true) => Health::Current,
        Ok(false) => Health::InProgress(
            condition_summary(object).unwrap_or_else(|| format!("waiting for {}", rule.text.0)),
        ),
        Err(e) => Health::InProgress(format!("{} ({e})", rule.text.0)),
    }
}

fn str_at<'v>(v: &'v Value, path: &[&str]) -> Option<&'v str> {
    path.iter()
        .try_fold(v, |v, k| v.get(k))
        .and_then(Value::as_str)
}

fn int_at(v: &Value, path: &[&str]) -> Option<i64> {
    path.iter()
        .try_fold(v, |v, k| v.get(k))
        .and_then(Value::as_i64)
}

fn conditions(v: &Value) -> &[Value] {
    v.get("status")
        .and_then(|s| s.get("conditions"))
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// A condition of `type`: (status, reason, message).
fn condition<'v>(v: &'v Value, kind: &str) -> Option<(&'v str, &'v str, &'v str)> {
    conditions(v)
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(kind))
        .map(|c| {
            let s = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("");
            (s("status"), s("reason"), s("message"))
        })
}

/// `TYPE=STATUS (REASON: MESSAGE)` of the conditions that say something.
fn condition_summary(v: &Value) -> Option<String> {
    let parts: Vec<String> = conditions(v)
        .iter()
        .filter_map(|c| {
            let s = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("");
            (!s("type").is_empty()).then(|| {
                let detail = [s("reason"), s("message")]
                    .into_iter()
                    .filter(|x| !x.is_empty())
                    .collect::<Vec<_>>()
                    .join(": ");
                if detail.is_empty() {
                    format!("{}={}", s("type"), s("status"))
                } else {
                    format!("{}={} ({detail})", s("type"), s("status"))
                }
            })
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// The controller has not seen the latest spec yet.
fn generation_pending(v: &Value) -> Option<Health> {
    let generation = int_at(v, &["metadata", "generation"])?;
    let observed = int_at(v, &["status", "observedGeneration"]);
    match observed {
        Some(o) if o >= generation => None,
        Some(o) => Some(Health::InProgress(format!(
            "generation {generation} not observed yet (observed {o})"
        ))),
        None => None,
    }
}

fn builtin_health(group: &str, kind: &str, v: &Value, desired: Option<&Value>) -> Health {
    match (group, kind) {
        ("apps", "StatefulSet") => statefulset(v),
        ("apps", "Deployment") => deployment(v),
        ("", "PersistentVolumeClaim") => match str_at(v, &["status", "phase"]) {
            Some("Bound") => Health::Current,
            Some("Lost") => Health::Failed("the claim lost its volume (phase Lost)".into()),
            other => Health::InProgress(format!("phase {}", other.unwrap_or("unknown"))),
        },
        ("batch", "Job") => match (condition(v, "Complete"), condition(v, "Failed")) {
            (_, Some(("True", reason, message))) => Health::Failed(format!("{reason}: {message}")),
            (Some(("True", _, _)), _) => Health::Current,
            _ => Health::InProgress("not complete".into()),
        },
        ("pravega.pravega.io", "PravegaCluster") => pravega(v, desired),
        ("psmdb.percona.com", "PerconaServerMongoDB") => percona(v),
        ("kafka.strimzi.io", "Kafka") => strimzi(v),
        ("cstor.openebs.io", "CStorVolumeConfig") => cstor_volume_config(v),
        ("cstor.openebs.io", "CStorVolumeReplica") => cstor_replica(v),
        ("cstor.openebs.io", "CStorVolume") => match str_at(v, &["status", "phase"]) {
            Some("Healthy") => Health::Current,
            Some(p @ ("Error" | "Offline")) => Health::Failed(format!("CStorVolume phase {p}")),
            other => Health::InProgress(format!("phase {}", other.unwrap_or("unknown"))),
        },
        _ => kstatus(v),
    }
}

fn statefulset(v: &Value) -> Health {
    if let Some(h) = generation_pending(v) {
        return h;
    }
    let want = int_at(v, &["spec", "replicas"]).unwrap_or(1);
    let ready = int_at(v, &["status", "readyReplicas"]).unwrap_or(0);
    let updated = int_at(v, &["status", "updatedReplicas"]).unwrap_or(0);
    let on_delete = str_at(v, &["spec", "updateStrategy", "type"]) == Some("OnDelete");
    let revisions_differ =
        str_at(v, &["status", "currentRevision"]) != str_at(v, &["status", "updateRevision"]);
    if ready < want {
        Health::InProgress(format!("{ready} of {want} replicas ready"))
    } else if !on_delete && (updated < want || revisions_differ) {
        Health::InProgress(format!("{updated} of {want} replicas updated"))
    } else {
        Health::Current
    }
}

fn deployment(v: &Value) -> Health {
    if let Some((_, "ProgressDeadlineExceeded", message)) = condition(v, "Progressing") {
        return Health::Failed(format!("ProgressDeadlineExceeded: {message}"));
    }
    if let Some(h) = generation_pending(v) {
        return h;
    }
    let want = int_at(v, &["spec", "replicas"]).unwrap_or(1);
    let available = int_at(v, &["status", "availableReplicas"]).unwrap_or(0);
    let updated = int_at(v, &["status", "updatedReplicas"]).unwrap_or(0);
    if updated < want || available < want {
        Health::InProgress(format!(
            "{available} of {want} available, {updated} updated"
        ))
    } else {
        Health::Current
    }
}

/// pravega-operator api/v1beta1/status.go: `Error` (reason `UpgradeFailed`),
/// `Upgrading` (reasons `Updating Bookkeeper|Segmentstore|Controller`, the
/// message the number of upgraded replicas), `PodsReady`; `currentVersion`.
fn pravega(v: &Value, desired: Option<&Value>) -> Health {
    if let Some(("True", reason, message)) = condition(v, "Error") {
        return Health::Failed(format!("{reason}: {message}"));
    }
    if let Some(("True", reason, message)) = condition(v, "RollbackInProgress") {
        return Health::InProgress(format!("rolling back: {reason} {message}"));
    }
    if let Some(("True", reason, message)) = condition(v, "Upgrading") {
        return Health::InProgress(format!("Upgrading: {reason} ({message})"));
    }
    let want = desired
        .and_then(|d| str_at(d, &["spec", "version"]))
        .or_else(|| str_at(v, &["spec", "version"]));
    let current = str_at(v, &["status", "currentVersion"]);
    if want.is_some() && want != current {
        return Health::InProgress(format!(
            "currentVersion {} (want {})",
            current.unwrap_or("unset"),
            want.unwrap_or_default()
        ));
    }
    match condition(v, "PodsReady") {
        Some(("True", _, _)) => Health::Current,
        _ => Health::InProgress("PodsReady is not True".into()),
    }
}

/// Percona: `status.state` `ready`, `error`, `initializing`, …
fn percona(v: &Value) -> Health {
    // The operator marks a resize it is doing with an annotation
    // (`percona.com/pvc-resize-in-progress`) on the resource.
    let resizing = v
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .is_some_and(|a| a.keys().any(|k| k.ends_with("pvc-resize-in-progress")));
    if resizing && str_at(v, &["status", "state"]) != Some("error") {
        return Health::InProgress("resizing volumes (pvc-resize-in-progress)".into());
    }
    match str_at(v, &["status", "state"]) {
        Some("ready") => Health::Current,
        Some("error") => Health::Failed(format!(
            "state error{}",
            str_at(v, &["status", "message"])
                .map(|m| format!(": {m}"))
                .or_else(|| condition_summary(v).map(|c| format!(": {c}")))
                .unwrap_or_default()
        )),
        other => Health::InProgress(format!("state {}", other.unwrap_or("unknown"))),
    }
}

/// Strimzi: `Ready=True` with `observedGeneration` equal to the generation;
/// `Ready=False` once observed is a failure (Flux's documented rule).
fn strimzi(v: &Value) -> Health {
    if let Some(h) = generation_pending(v) {
        return h;
    }
    match condition(v, "Ready") {
        Some(("True", _, _)) => Health::Current,
        Some(("False", reason, message)) => {
            Health::Failed(format!("Ready=False: {reason}: {message}"))
        }
        _ => Health::InProgress(
            condition_summary(v).unwrap_or_else(|| "no Ready condition yet".into()),
        ),
    }
}

/// cStor CVC: `Bound`, and the pools holding a replica
/// (`status.poolInfo`) are those the spec asks for
/// (`spec.policy.replicaPoolInfo[].poolName`).
fn cstor_volume_config(v: &Value) -> Health {
    let phase = str_at(v, &["status", "phase"]);
    if phase != Some("Bound") {
        return Health::InProgress(format!("phase {}", phase.unwrap_or("unknown")));
    }
    let mut wanted: Vec<&str> = v
        .get("spec")
        .and_then(|s| s.get("policy"))
        .and_then(|p| p.get("replicaPoolInfo"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|p| str_at(p, &["poolName"])).collect())
        .unwrap_or_default();
    let mut have: Vec<&str> = v
        .get("status")
        .and_then(|s| s.get("poolInfo"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    wanted.sort_unstable();
    have.sort_unstable();
    if wanted.is_empty() || wanted == have {
        Health::Current
    } else {
        Health::InProgress(format!(
            "replicas on [{}], wanted on [{}]",
            have.join(", "),
            wanted.join(", ")
        ))
    }
}

/// cStor CVR phases (openebs api pkg/apis/cstor/v1/cstorvolumereplica.go).
fn cstor_replica(v: &Value) -> Health {
    match str_at(v, &["status", "phase"]) {
        Some("Healthy") => Health::Current,
        Some(p @ ("Error" | "DeletionFailed" | "Invalid")) => {
            Health::Failed(format!("CStorVolumeReplica phase {p}"))
        }
        other => Health::InProgress(format!("phase {}", other.unwrap_or("unknown"))),
    }
}

/// kstatus: the latest generation observed, then `Stalled` (failed),
/// `Reconciling` (in progress), `Ready`; a resource without conditions is
/// current once observed.
fn kstatus(v: &Value) -> Health {
    if let Some(h) = generation_pending(v) {
        return h;
    }
    if let Some(("True", reason, message)) = condition(v, "Stalled") {
        return Health::Failed(format!("Stalled: {reason}: {message}"));
    }
    if let Some(("True", reason, message)) = condition(v, "Reconciling") {
        return Health::InProgress(format!("Reconciling: {reason}: {message}"));
    }
    match condition(v, "Ready") {
        Some(("True", _, _)) | None => Health::Current,
        Some((status, reason, message)) => {
            Health::InProgress(format!("Ready={status}: {reason}: {message}"))
        }
    }
}

/// The field that carries a custom resource's version, for the kinds whose
/// operator upgrades on a change of it (a JSON pointer): downgrades are
/// refused and the catalog's upgrade paths apply, as for charts.
pub fn version_field(api_version: &str, kind: &str) -> Option<&'static str> {
    match (group_of(api_version), kind) {
        // pravega-operator doc/upgrade-cluster.md: `spec.version` starts
        // the upgrade; its webhook refuses downgrades.
        ("pravega.pravega.io", "PravegaCluster") => Some("/spec/version"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pravega_cr(conditions: Value, current: &str) -> Value {
        json!({"apiVersion": "pravega.pravega.io/v1beta1", "kind": "PravegaCluster",
               "metadata": {"name": "p", "generation": 2},
               "spec": {"version": "0.10.0"},
               "status": {"currentVersion": current, "conditions": conditions}})
    }

    #[test]
    fn pravega_follows_the_operator_conditions() {
        let r = HealthRules::default();
        let upgrading = pravega_cr(
            json!([{"type": "Upgrading", "status": "True", "reason": "Updating Segmentstore", "message": "1"},
                   {"type": "PodsReady", "status": "False"}]),
            "0.9.0",
        );
        assert_eq!(
            r.health(&upgrading, None),
            Health::InProgress("Upgrading: Updating Segmentstore (1)".into())
        );
        let failed = pravega_cr(
            json!([{"type": "Error", "status": "True", "reason": "UpgradeFailed",
                    "message": "failed to sync segmentstore version. pod p-segmentstore-0 is restarting"}]),
            "0.9.0",
        );
        assert_eq!(
            r.health(&failed, None),
            Health::Failed("UpgradeFailed: failed to sync segmentstore version. pod p-segmentstore-0 is restarting".into())
        );
        let done = pravega_cr(
            json!([{"type": "Upgrading", "status": "False"}, {"type": "PodsReady", "status": "True"}]),
            "0.10.0",
        );
        assert_eq!(r.health(&done, None), Health::Current);
        let desired = json!({"spec": {"version": "0.11.0"}});
        assert!(matches!(
            r.health(&done, Some(&desired)),
            Health::InProgress(_)
        ));
    }

    #[test]
    fn strimzi_needs_the_latest_generation_observed() {
        let r = HealthRules::default();
        let k = |observed: i64, status: &str| {
            json!({"apiVersion": "kafka.strimzi.io/v1beta2", "kind": "Kafka",
                   "metadata": {"generation": 3},
                   "status": {"observedGeneration": observed,
                              "conditions": [{"type": "Ready", "status": status}]}})
        };
        assert!(matches!(
            r.health(&k(2, "True"), None),
            Health::InProgress(_)
        ));
        assert_eq!(r.health(&k(3, "True"), None), Health::Current);
        assert!(matches!(r.health(&k(3, "False"), None), Health::Failed(_)));
    }

    #[test]
    fn cstor_and_percona_and_kstatus() {
        let r = HealthRules::default();
        let cvr = |p: &str| json!({"apiVersion": "cstor.openebs.io/v1", "kind": "CStorVolumeReplica", "status": {"phase": p}});
        assert!(matches!(
            r.health(&cvr("ReconstructingNewReplica"), None),
            Health::InProgress(_)
        ));
        assert_eq!(r.health(&cvr("Healthy"), None), Health::Current);
        assert!(matches!(r.health(&cvr("Error"), None), Health::Failed(_)));
        let cvc = json!({"apiVersion": "cstor.openebs.io/v1", "kind": "CStorVolumeConfig",
            "spec": {"policy": {"replicaPoolInfo": [{"poolName": "a"}, {"poolName": "c"}]}},
            "status": {"phase": "Bound", "poolInfo": ["a", "b"]}});
        assert!(matches!(r.health(&cvc, None), Health::InProgress(_)));
        let psmdb = |s: &str| json!({"apiVersion": "psmdb.percona.com/v1", "kind": "PerconaServerMongoDB", "status": {"state": s}});
        assert_eq!(r.health(&psmdb("ready"), None), Health::Current);
        let mut resizing = psmdb("ready");
        resizing["metadata"] =
            json!({"annotations": {"percona.com/pvc-resize-in-progress": "2026-12-01T21:00:00Z"}});
        assert!(matches!(r.health(&resizing, None), Health::InProgress(_)));
        assert!(matches!(r.health(&psmdb("error"), None), Health::Failed(_)));
        assert!(matches!(
            r.health(&psmdb("initializing"), None),
            Health::InProgress(_)
        ));
        let other = |c: Value| {
            json!({"apiVersion": "x.example.com/v1", "kind": "Thing",
            "metadata": {"generation": 1}, "status": {"observedGeneration": 1, "conditions": c}})
        };
        assert_eq!(r.health(&other(json!([])), None), Health::Current);
        assert!(matches!(
            r.health(&other(json!([{"type": "Ready", "status": "False"}])), None),
            Health::InProgress(_)
        ));
        assert!(matches!(
            r.health(&other(json!([{"type": "Stalled", "status": "True"}])), None),
            Health::Failed(_)
        ));
    }

    #[test]
    fn declared_rules_are_cel_over_the_object_and_the_desired_object() {
        let spec = HealthRuleSpec {
            api_version: "x.example.com/v1".into(),
            kind: "Thing".into(),
            current: "status.version == desired.spec.version".into(),
            failed: Some("status.phase == 'Broken'".into()),
            at: "plimsoll.yaml:3:5".into(),
        };
        let r = HealthRules::compile(std::slice::from_ref(&spec)).unwrap();
        let obj = |v: &str, phase: &str| {
            json!({"apiVersion": "x.example.com/v1", "kind": "Thing",
            "status": {"version": v, "phase": phase}})
        };
        let desired = json!({"spec": {"version": "2"}});
        assert_eq!(r.health(&obj("2", "Ok"), Some(&desired)), Health::Current);
        assert!(matches!(
            r.health(&obj("1", "Ok"), Some(&desired)),
            Health::InProgress(_)
        ));
        assert!(matches!(
            r.health(&obj("2", "Broken"), Some(&desired)),
            Health::Failed(_)
        ));
        // No status yet: in progress, not an error.
        let bare = json!({"apiVersion": "x.example.com/v1", "kind": "Thing"});
        assert!(matches!(
            r.health(&bare, Some(&desired)),
            Health::InProgress(_)
        ));
        let bad = HealthRuleSpec {
            current: "status.version ==".into(),
            ..spec
        };
        let e = HealthRules::compile(&[bad]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("plimsoll.yaml:3:5: health rule for Thing: current:"),
            "{e}"
        );
    }
}
