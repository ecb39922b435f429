//! Desired state of a release from its rendered values and the chart
//! rendered with them (`helm template` output): which StatefulSets, with
//! which claim templates, and which Deployments. No mapping from values
//! keys to PVC names is hard-coded: the chart says.

use plimsoll_yaml::{self as yaml, Kind, Node};

use crate::state::{ClaimTemplate, DesiredStatefulSet, PvcRetention};

/// StatefulSets and Deployment names found in `helm template` output.
pub fn workloads_from_manifests(
    manifests: &str,
) -> Result<(Vec<DesiredStatefulSet>, Vec<String>), yaml::SyntaxError> {
    let mut statefulsets = Vec::new();
    let mut deployments = Vec::new();
    for doc in yaml::parse_documents(manifests.as_bytes(), 0)? {
        let obj = doc.unwrap_document();
        let text = |n: Option<&Node>| {
            n.filter(|n| n.kind == Kind::Scalar)
                .map(|n| n.value.clone())
        };
        let kind = text(obj.get("kind"));
        let name = text(obj.get("metadata").and_then(|m| m.get("name"))).unwrap_or_default();
        match kind.as_deref() {
            Some("StatefulSet") => {
                let spec = obj.get("spec");
                let replicas = text(spec.and_then(|s| s.get("replicas")))
                    .and_then(|r| r.parse().ok())
                    .unwrap_or(1);
                let claim_templates = spec
                    .and_then(|s| s.get("volumeClaimTemplates"))
                    .map(|v| {
                        v.content
                            .iter()
                            .map(|t| ClaimTemplate {
                                name: text(t.get("metadata").and_then(|m| m.get("name")))
                                    .unwrap_or_default(),
                                storage_class: text(
                                    t.get("spec").and_then(|s| s.get("storageClassName")),
                                ),
                                size: text(
                                    t.get("spec")
                                        .and_then(|s| s.get("resources"))
                                        .and_then(|r| r.get("requests"))
                                        .and_then(|r| r.get("storage")),
                                )
                                .unwrap_or_default(),
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let policy = spec.and_then(|s| s.get("persistentVolumeClaimRetentionPolicy"));
                let pvc_retention = PvcRetention {
                    when_deleted: text(policy.and_then(|p| p.get("whenDeleted"))),
                    when_scaled: text(policy.and_then(|p| p.get("whenScaled"))),
                };
                statefulsets.push(DesiredStatefulSet {
                    name,
                    replicas,
                    claim_templates,
                    pvc_retention,
                });
            }
            Some("Deployment") => deployments.push(name),
            _ => {}
        }
    }
    Ok((statefulsets, deployments))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_statefulsets_and_their_claims() {
        let manifests = "---\n# Source: c/templates/db.yaml\napiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: db\nspec:\n  replicas: 3\n  volumeClaimTemplates:\n    - metadata:\n        name: data\n      spec:\n        storageClassName: \"fast\"\n        resources:\n          requests:\n            storage: 15Gi\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n";
        let (sts, deps) = workloads_from_manifests(manifests).unwrap();
        assert_eq!(sts.len(), 1);
        assert_eq!(sts[0].name, "db");
        assert_eq!(sts[0].replicas, 3);
        assert_eq!(sts[0].claim_templates[0].size, "15Gi");
        assert_eq!(
            sts[0].claim_templates[0].storage_class.as_deref(),
            Some("fast")
        );
        assert_eq!(deps, vec!["web".to_string()]);
        assert!(sts[0].pvc_retention.is_default());
        let with_policy = manifests.replace(
            "  replicas: 3\n",
            "  replicas: 3\n  persistentVolumeClaimRetentionPolicy:\n    whenDeleted: Retain\n    whenScaled: Delete\n",
        );
        let (sts, _) = workloads_from_manifests(&with_policy).unwrap();
        assert!(sts[0].pvc_retention.deletes_when_scaled());
        assert!(!sts[0].pvc_retention.deletes_when_deleted());
    }
}
