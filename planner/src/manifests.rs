//! Desired state of a release from its rendered values and the chart
//! rendered with them (`helm template` output): which StatefulSets, with
//! which claim templates, and which Deployments. No mapping from values
//! keys to PVC names is hard-coded: the chart says.

use plimsoll_yaml::{self as yaml, Kind, Node};

use serde::{Deserialize, Serialize};

use crate::state::{ClaimTemplate, DesiredResource, DesiredStatefulSet, PvcRetention, ResourceRef};

/// What the planner needs of a chart rendered with a release's values.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Workloads {
    /// StatefulSets, with their claim templates.
    pub statefulsets: Vec<DesiredStatefulSet>,
    /// Deployment names.
    pub deployments: Vec<String>,
    /// DaemonSet names.
    #[serde(default)]
    pub daemonsets: Vec<String>,
    /// Custom resources (an operator's kinds), as rendered: waited on by
    /// their health rules after the upgrade.
    pub custom_resources: Vec<DesiredResource>,
    /// The rendered manifests, for the manifest diff.
    #[serde(default)]
    pub manifest: String,
}

/// A custom resource's apiVersion: a group with a dot that is not one of
/// Kubernetes' own (`*.k8s.io`).
fn is_custom(api_version: &str) -> bool {
    api_version
        .split_once('/')
        .is_some_and(|(group, _)| group.contains('.') && !group.ends_with(".k8s.io"))
}

/// An error in a manifest that is not YAML syntax.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{0}")]
    Syntax(#[from] yaml::SyntaxError),
    #[error("{kind}/{name}: {error}")]
    Json {
        kind: String,
        name: String,
        error: yaml::json::JsonError,
    },
}

/// StatefulSets, Deployments and custom resources found in `helm
/// template` output.
pub fn workloads_from_manifests(manifests: &str) -> Result<Workloads, ManifestError> {
    let mut statefulsets = Vec::new();
    let mut deployments = Vec::new();
    let mut daemonsets = Vec::new();
    let mut custom_resources = Vec::new();
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
            Some("DaemonSet") => daemonsets.push(name),
            Some(kind) => {
                let api_version = text(obj.get("apiVersion")).unwrap_or_default();
                if is_custom(&api_version) && !name.is_empty() {
                    let json = yaml::json::to_json(obj).map_err(|error| ManifestError::Json {
                        kind: kind.to_string(),
                        name: name.clone(),
                        error,
                    })?;
                    let object = serde_json::from_str(&json).unwrap_or_default();
                    custom_resources.push(DesiredResource {
                        target: ResourceRef {
                            api_version,
                            kind: kind.to_string(),
                            namespace: text(obj.get("metadata").and_then(|m| m.get("namespace")))
                                .unwrap_or_default(),
                            name,
                        },
                        object,
                    });
                }
            }
            None => {}
        }
    }
    // Document order is the helm's: the binary sorts by install order
    // (Deployments before StatefulSets, unknown kinds by name), the SDK's
    // template by file path. A plan must not depend on which helm
    // rendered it, so workloads are kept by name.
    statefulsets.sort_by(|a, b| a.name.cmp(&b.name));
    deployments.sort();
    daemonsets.sort();
    custom_resources.sort_by(|a, b| object_order(&a.target).cmp(&object_order(&b.target)));
    Ok(Workloads {
        statefulsets,
        deployments,
        daemonsets,
        custom_resources,
        manifest: manifests.to_string(),
    })
}

fn object_order(r: &ResourceRef) -> (&str, &str, &str, &str) {
    (&r.kind, &r.namespace, &r.name, &r.api_version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_statefulsets_and_their_claims() {
        let manifests = "---\n# Source: c/templates/db.yaml\napiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: db\nspec:\n  replicas: 3\n  volumeClaimTemplates:\n    - metadata:\n        name: data\n      spec:\n        storageClassName: \"fast\"\n        resources:\n          requests:\n            storage: 15Gi\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n";
        let w = workloads_from_manifests(manifests).unwrap();
        let (sts, deps) = (w.statefulsets, w.deployments);
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
        let sts = workloads_from_manifests(&with_policy).unwrap().statefulsets;
        assert!(sts[0].pvc_retention.deletes_when_scaled());
        assert!(!sts[0].pvc_retention.deletes_when_deleted());
    }

    #[test]
    fn workloads_are_the_same_in_any_document_order() {
        let docs = [
            "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: lrc\n",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: twa\n",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: api\n",
            "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: agent\n",
            "apiVersion: kafka.strimzi.io/v1beta2\nkind: Kafka\nmetadata:\n  name: k\n",
            "apiVersion: psmdb.percona.com/v1\nkind: PerconaServerMongoDB\nmetadata:\n  name: m\n",
            "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: db\n",
        ];
        let forward = workloads_from_manifests(&docs.join("---\n")).unwrap();
        let mut reversed = docs;
        reversed.reverse();
        let backward = workloads_from_manifests(&reversed.join("---\n")).unwrap();
        let names = |w: &Workloads| {
            (
                w.statefulsets
                    .iter()
                    .map(|s| s.name.clone())
                    .collect::<Vec<_>>(),
                w.deployments.clone(),
                w.daemonsets.clone(),
                w.custom_resources
                    .iter()
                    .map(|c| c.target.kind.clone())
                    .collect::<Vec<_>>(),
            )
        };
        assert_eq!(names(&forward), names(&backward));
        assert_eq!(
            names(&forward),
            (
                vec!["db".to_string(), "lrc".to_string()],
                vec!["api".to_string(), "twa".to_string()],
                vec!["agent".to_string()],
                vec!["Kafka".to_string(), "PerconaServerMongoDB".to_string()],
            )
        );
    }

    #[test]
    fn finds_custom_resources_but_not_kubernetes_own_kinds() {
        let manifests = "apiVersion: pravega.pravega.io/v1beta1\nkind: PravegaCluster\nmetadata:\n  name: pravega\nspec:\n  version: 0.10.0\n---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: web\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n";
        let w = workloads_from_manifests(manifests).unwrap();
        assert_eq!(w.custom_resources.len(), 1);
        let cr = &w.custom_resources[0];
        assert_eq!(cr.target.kind, "PravegaCluster");
        assert_eq!(cr.object["spec"]["version"], "0.10.0");
    }
}
