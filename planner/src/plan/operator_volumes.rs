//! Operator-managed volumes (seed 000, step 5): PVCs an operator creates
//! from a custom resource, which the chart's StatefulSets do not show.
//! Built in for the seeds' operators, from their documentation:
//!
//! - Percona `PerconaServerMongoDB`: each `spec.replsets[]` has
//!   `volumeSpec.persistentVolumeClaim.resources.requests.storage` (and
//!   `storageClassName`); its PVCs are `mongod-data-CR-REPLSET-N`, N below
//!   the replset's `size`.
//! - Strimzi `Kafka`: `spec.kafka.storage` of type `persistent-claim`
//!   (`size`, `class`) gives `data-CR-kafka-N`; of type `jbod`, each
//!   volume `id` gives `data-ID-CR-kafka-N`; N below `spec.kafka.replicas`.
//!
//! The stack file's `operatorVolumes:` declares the same for other kinds
//! (or replaces a built-in): where the resource carries the size, the
//! class and the number of ordinals (JSON pointers, `*` standing for each
//! item of an `each` list), and the claim's name (`{name}` the resource's,
//! `{item}` the item's `itemName`, `{ordinal}`). At most
//! [`MAX_ORDINALS`] ordinals a family: a rendered resource is untrusted.
//!
//! The same rules as for a chart's claims apply (no shrink, no class
//! change, growth only on an expandable class); growth is the operator's
//! to do once the upgrade has changed its resource, so the plan waits for
//! it after the upgrade and names the operator when it does not.

use serde_json::Value;

use crate::state::{DesiredRelease, DesiredResource, ObservedState, ResourceRef};

use super::volumes::{judge_claim, Asked, ClaimChange};
use super::{Plan, ReleasePlan};

/// Ordinals per claim family at most (a hostile `size: 1e9` must not make
/// a billion claims).
pub const MAX_ORDINALS: u64 = 1000;

/// A declared family of claims an operator keeps for a kind.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OperatorVolumeRule {
    pub group: String,
    pub kind: String,
    /// A list in the resource; one family per item (`*` in the pointers
    /// below is the item's index).
    pub each: Option<String>,
    /// The item's name, `{item}` in `pvc`.
    pub item_name: Option<String>,
    /// The number of ordinals; `default_replicas` when absent.
    pub replicas: Option<String>,
    #[serde(default = "one")]
    pub default_replicas: u64,
    pub size: String,
    pub storage_class: Option<String>,
    /// The claim's name: `{name}`, `{item}`, `{ordinal}`.
    pub pvc: String,
    /// A boolean field that must be true for the operator to grow claims.
    #[serde(default)]
    pub enabled_by: Option<String>,
}

fn one() -> u64 {
    1
}

/// A string or a number at `pointer`, `*` replaced by `index`.
fn scalar_at(o: &Value, pointer: &str, index: Option<usize>) -> Option<String> {
    let p = match index {
        Some(i) => pointer.replace("/*", &format!("/{i}")),
        None => pointer.to_string(),
    };
    match o.pointer(&p)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn declared_claims(c: &DesiredResource, rule: &OperatorVolumeRule, out: &mut Vec<OperatorClaim>) {
    let o = &c.object;
    let items: Vec<Option<usize>> = match &rule.each {
        Some(each) => (0..o
            .pointer(each)
            .and_then(Value::as_array)
            .map_or(0, Vec::len))
            .map(Some)
            .collect(),
        None => vec![None],
    };
    for i in items {
        let Some(size) = scalar_at(o, &rule.size, i) else {
            continue;
        };
        let class = rule.storage_class.as_ref().and_then(|p| scalar_at(o, p, i));
        let item = rule
            .item_name
            .as_ref()
            .and_then(|p| scalar_at(o, p, i))
            .unwrap_or_default();
        let replicas = rule
            .replicas
            .as_ref()
            .and_then(|p| scalar_at(o, p, i))
            .and_then(|r| r.parse::<u64>().ok())
            .unwrap_or(rule.default_replicas)
            .min(MAX_ORDINALS);
        for ordinal in 0..replicas {
            out.push(OperatorClaim {
                pvc: rule
                    .pvc
                    .replace("{name}", &c.target.name)
                    .replace("{item}", &item)
                    .replace("{ordinal}", &ordinal.to_string()),
                size: size.clone(),
                storage_class: class.clone(),
                resource: c.target.clone(),
                enabled_by: rule.enabled_by.clone(),
            });
        }
    }
}

/// One PVC an operator keeps for a resource, at the size the resource asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperatorClaim {
    pub pvc: String,
    pub size: String,
    pub storage_class: Option<String>,
    pub resource: ResourceRef,
    /// A boolean field of the resource that must be true for the operator
    /// to grow its claims (Percona: `/spec/enableVolumeExpansion`).
    pub enabled_by: Option<String>,
}

fn s<'v>(v: &'v Value, pointer: &str) -> Option<&'v str> {
    v.pointer(pointer).and_then(Value::as_str)
}

fn n(v: &Value, pointer: &str) -> Option<u64> {
    let x = v.pointer(pointer)?;
    x.as_u64()
        .or_else(|| x.as_str().and_then(|t| t.parse().ok()))
}

/// The claims a custom resource's operator keeps: by the declared rules
/// for its kind, else by the built-in ones.
pub fn operator_claims(c: &DesiredResource, declared: &[OperatorVolumeRule]) -> Vec<OperatorClaim> {
    let group = c.target.api_version.split('/').next().unwrap_or("");
    let name = &c.target.name;
    let o = &c.object;
    let mut out = Vec::new();
    let rules: Vec<&OperatorVolumeRule> = declared
        .iter()
        .filter(|r| r.group == group && r.kind == c.target.kind)
        .collect();
    if !rules.is_empty() {
        for r in rules {
            declared_claims(c, r, &mut out);
        }
        return out;
    }
    let enabled_by = match c.target.kind.as_str() {
        "PerconaServerMongoDB" => Some("/spec/enableVolumeExpansion".to_string()),
        _ => None,
    };
    let mut claim = |pvc: String, size: &str, class: Option<&str>| {
        out.push(OperatorClaim {
            pvc,
            size: size.to_string(),
            storage_class: class.map(str::to_string),
            resource: c.target.clone(),
            enabled_by: enabled_by.clone(),
        })
    };
    match (group, c.target.kind.as_str()) {
        ("psmdb.percona.com", "PerconaServerMongoDB") => {
            for rs in o
                .pointer("/spec/replsets")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let (Some(rs_name), Some(size)) = (
                    s(rs, "/name"),
                    s(
                        rs,
                        "/volumeSpec/persistentVolumeClaim/resources/requests/storage",
                    ),
                ) else {
                    continue;
                };
                let class = s(rs, "/volumeSpec/persistentVolumeClaim/storageClassName");
                for i in 0..n(rs, "/size").unwrap_or(3).min(MAX_ORDINALS) {
                    claim(format!("mongod-data-{name}-{rs_name}-{i}"), size, class);
                }
            }
        }
        ("kafka.strimzi.io", "Kafka") => {
            let replicas = n(o, "/spec/kafka/replicas").unwrap_or(1).min(MAX_ORDINALS);
            let storage = o
                .pointer("/spec/kafka/storage")
                .cloned()
                .unwrap_or_default();
            match s(&storage, "/type") {
                Some("persistent-claim") => {
                    if let Some(size) = s(&storage, "/size") {
                        for i in 0..replicas {
                            claim(
                                format!("data-{name}-kafka-{i}"),
                                size,
                                s(&storage, "/class"),
                            );
                        }
                    }
                }
                Some("jbod") => {
                    for v in storage
                        .pointer("/volumes")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        let (Some(id), Some(size)) = (n(v, "/id"), s(v, "/size")) else {
                            continue;
                        };
                        for i in 0..replicas {
                            claim(format!("data-{id}-{name}-kafka-{i}"), size, s(v, "/class"));
                        }
                    }
                }
                _ => {}
            }
        }
        _ => {}
    }
    out
}

/// Rows, refusals and the growth the operator must do: `(pvc, to,
/// resource)` for each claim to wait for after the upgrade.
pub(super) fn plan_operator_volumes(
    d: &DesiredRelease,
    observed: &ObservedState,
    declared: &[OperatorVolumeRule],
    rp: &mut ReleasePlan,
    out: &mut Plan,
) -> Vec<(String, String, ResourceRef)> {
    let mut waits = Vec::new();
    for c in d
        .custom_resources
        .iter()
        .flat_map(|c| operator_claims(c, declared))
    {
        let Some(pvc) = observed
            .pvcs
            .iter()
            .find(|p| p.name == c.pvc && p.namespace == c.resource.namespace)
        else {
            // Not created yet: the operator makes it at the asked size.
            continue;
        };
        let asked = Asked {
            shown: format!("{} ({}/{})", c.pvc, c.resource.kind, c.resource.name),
            size: &c.size,
            class: c.storage_class.as_deref(),
        };
        match judge_claim(d, observed, pvc, asked, rp, out) {
            ClaimChange::None => {}
            ClaimChange::Grow(..) | ClaimChange::Resizing => {
                if let Some(field) = &c.enabled_by {
                    if !growth_enabled(d, observed, &c.resource, field) {
                        let warning = format!(
                            "{}: {}/{} grows its claims only with {} true, which neither the chart nor a declared patch sets: add a patch (`{{op: add, path: {field}, value: true}}`) or the sync will wait for growth that never comes",
                            d.name,
                            c.resource.kind,
                            c.resource.name,
                            field.trim_start_matches('/').replace('/', ".")
                        );
                        if !out.warnings.contains(&warning) {
                            out.warnings.push(warning);
                        }
                    }
                }
                waits.push((c.pvc.clone(), c.size.clone(), c.resource.clone()))
            }
        }
    }
    waits
}

/// Whether `field` is true in the resource as rendered, in the live one,
/// or after the release's declared patches of it.
fn growth_enabled(
    d: &DesiredRelease,
    observed: &ObservedState,
    r: &ResourceRef,
    field: &str,
) -> bool {
    let rendered = d
        .custom_resources
        .iter()
        .find(|c| c.target == *r)
        .map(|c| &c.object);
    let live = observed
        .resources
        .iter()
        .find(|o| o.target == *r)
        .and_then(|o| o.object.as_ref());
    let is_true = |v: &Value| v.pointer(field).and_then(Value::as_bool) == Some(true);
    if rendered.is_some_and(is_true) || live.is_some_and(is_true) {
        return true;
    }
    d.patches.iter().filter(|p| p.target == *r).any(|p| {
        let mut o = live.or(rendered).cloned().unwrap_or(Value::Null);
        serde_json::from_value::<json_patch::Patch>(p.operations.clone())
            .ok()
            .is_some_and(|ops| json_patch::patch(&mut o, &ops).is_ok() && is_true(&o))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn percona_and_strimzi_claims_follow_their_naming() {
        let psmdb = DesiredResource {
            target: ResourceRef {
                api_version: "psmdb.percona.com/v1".into(),
                kind: "PerconaServerMongoDB".into(),
                namespace: "tp".into(),
                name: "mongo-replicaset".into(),
            },
            object: json!({"spec": {"replsets": [{"name": "rs0", "size": 3, "volumeSpec": {
                "persistentVolumeClaim": {"storageClassName": "fast", "resources": {"requests": {"storage": "45Gi"}}}}}]}}),
        };
        let c = operator_claims(&psmdb, &[]);
        assert_eq!(c.len(), 3);
        assert_eq!(c[0].pvc, "mongod-data-mongo-replicaset-rs0-0");
        assert_eq!(c[2].size, "45Gi");
        let kafka = DesiredResource {
            target: ResourceRef {
                api_version: "kafka.strimzi.io/v1beta2".into(),
                kind: "Kafka".into(),
                namespace: "tp".into(),
                name: "kafka-cluster".into(),
            },
            object: json!({"spec": {"kafka": {"replicas": 2, "storage": {"type": "jbod", "volumes": [
                {"id": 0, "type": "persistent-claim", "size": "40Gi"}]}}}}),
        };
        let c = operator_claims(&kafka, &[]);
        assert_eq!(
            c.iter().map(|c| c.pvc.as_str()).collect::<Vec<_>>(),
            [
                "data-0-kafka-cluster-kafka-0",
                "data-0-kafka-cluster-kafka-1"
            ]
        );
    }

    #[test]
    fn declared_rules_name_claims_per_item_and_are_bounded() {
        // The Percona rule, declared: the same claims as the built-in.
        let rule = OperatorVolumeRule {
            group: "psmdb.percona.com".into(),
            kind: "PerconaServerMongoDB".into(),
            each: Some("/spec/replsets".into()),
            item_name: Some("/spec/replsets/*/name".into()),
            replicas: Some("/spec/replsets/*/size".into()),
            default_replicas: 3,
            size: "/spec/replsets/*/volumeSpec/persistentVolumeClaim/resources/requests/storage"
                .into(),
            storage_class: Some(
                "/spec/replsets/*/volumeSpec/persistentVolumeClaim/storageClassName".into(),
            ),
            pvc: "mongod-data-{name}-{item}-{ordinal}".into(),
            enabled_by: Some("/spec/enableVolumeExpansion".into()),
        };
        let mut psmdb = DesiredResource {
            target: ResourceRef {
                api_version: "psmdb.percona.com/v1".into(),
                kind: "PerconaServerMongoDB".into(),
                namespace: "tp".into(),
                name: "mongo".into(),
            },
            object: json!({"spec": {"replsets": [
                {"name": "rs0", "size": 3, "volumeSpec": {"persistentVolumeClaim": {"storageClassName": "fast", "resources": {"requests": {"storage": "45Gi"}}}}},
                {"name": "cfg", "volumeSpec": {"persistentVolumeClaim": {"resources": {"requests": {"storage": "5Gi"}}}}}]}}),
        };
        let declared = operator_claims(&psmdb, std::slice::from_ref(&rule));
        let names: Vec<&str> = declared.iter().map(|c| c.pvc.as_str()).collect();
        assert_eq!(names.len(), 6, "{names:?}");
        assert_eq!(names[0], "mongod-data-mongo-rs0-0");
        assert_eq!(names[5], "mongod-data-mongo-cfg-2");
        assert_eq!(declared[0].storage_class.as_deref(), Some("fast"));
        assert_eq!(declared[5].size, "5Gi");
        assert_eq!(declared, operator_claims(&psmdb, &[]));
        // A hostile replica count makes at most MAX_ORDINALS claims.
        psmdb.object["spec"]["replsets"][0]["size"] = json!(1_000_000_000u64);
        let n = operator_claims(&psmdb, std::slice::from_ref(&rule)).len() as u64;
        assert_eq!(n, MAX_ORDINALS + 3);
        assert_eq!(operator_claims(&psmdb, &[]).len() as u64, MAX_ORDINALS + 3);
    }
}
