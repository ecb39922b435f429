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
//! The same rules as for a chart's claims apply (no shrink, no class
//! change, growth only on an expandable class); growth is the operator's
//! to do once the upgrade has changed its resource, so the plan waits for
//! it after the upgrade and names the operator when it does not.

use serde_json::Value;

use crate::state::{DesiredRelease, DesiredResource, ObservedState, ResourceRef};

use super::volumes::{judge_claim, Asked, ClaimChange};
use super::{Plan, ReleasePlan};

/// One PVC an operator keeps for a resource, at the size the resource asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperatorClaim {
    pub pvc: String,
    pub size: String,
    pub storage_class: Option<String>,
    pub resource: ResourceRef,
}

fn s<'v>(v: &'v Value, pointer: &str) -> Option<&'v str> {
    v.pointer(pointer).and_then(Value::as_str)
}

fn n(v: &Value, pointer: &str) -> Option<u64> {
    let x = v.pointer(pointer)?;
    x.as_u64()
        .or_else(|| x.as_str().and_then(|t| t.parse().ok()))
}

/// The claims a custom resource's operator keeps, by the built-in rules.
pub fn operator_claims(c: &DesiredResource) -> Vec<OperatorClaim> {
    let group = c.target.api_version.split('/').next().unwrap_or("");
    let name = &c.target.name;
    let o = &c.object;
    let mut out = Vec::new();
    let mut claim = |pvc: String, size: &str, class: Option<&str>| {
        out.push(OperatorClaim {
            pvc,
            size: size.to_string(),
            storage_class: class.map(str::to_string),
            resource: c.target.clone(),
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
                for i in 0..n(rs, "/size").unwrap_or(3) {
                    claim(format!("mongod-data-{name}-{rs_name}-{i}"), size, class);
                }
            }
        }
        ("kafka.strimzi.io", "Kafka") => {
            let replicas = n(o, "/spec/kafka/replicas").unwrap_or(1);
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
    rp: &mut ReleasePlan,
    out: &mut Plan,
) -> Vec<(String, String, ResourceRef)> {
    let mut waits = Vec::new();
    for c in d.custom_resources.iter().flat_map(operator_claims) {
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
                waits.push((c.pvc.clone(), c.size.clone(), c.resource.clone()))
            }
        }
    }
    waits
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
        let c = operator_claims(&psmdb);
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
        let c = operator_claims(&kafka);
        assert_eq!(
            c.iter().map(|c| c.pvc.as_str()).collect::<Vec<_>>(),
            [
                "data-0-kafka-cluster-kafka-0",
                "data-0-kafka-cluster-kafka-1"
            ]
        );
    }
}
