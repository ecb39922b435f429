//! Observed state read from a cluster. **I/O edge:** the planner consumes
//! what it returns (or a snapshot of it) as plain data.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DynamicObject, GroupVersionKind, ListParams};
use kube::discovery::Scope;

use crate::helm_release::decode_release;
use plimsoll_planner::state::{
    ClaimTemplate, DeploymentState, ObservedResource, ObservedState, PvcState, ReleaseState,
    ResourceRef, StatefulSetState, StorageClassState,
};

#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    #[error("kubernetes: {0}")]
    Kube(#[from] kube::Error),
    #[error("reading namespace {namespace}: {source}")]
    Namespace {
        namespace: String,
        source: Box<ObserveError>,
    },
    #[error("release secret {secret}: {source}")]
    Release {
        secret: String,
        source: crate::helm_release::DecodeError,
    },
}

fn release_of(
    labels: &Option<BTreeMap<String, String>>,
    annotations: &Option<BTreeMap<String, String>>,
) -> Option<String> {
    annotations
        .as_ref()
        .and_then(|a| a.get("meta.helm.sh/release-name").cloned())
        .or_else(|| {
            labels
                .as_ref()
                .and_then(|l| l.get("app.kubernetes.io/instance").cloned())
        })
}

fn storage(
    q: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
) -> Option<String> {
    q.and_then(|m| m.get("storage")).map(|q| q.0.clone())
}

/// Reads the observed state the planner needs: for each namespace its
/// Helm releases, StatefulSets, PVCs and Deployments; the StorageClasses
/// (once: they are cluster-wide); and the resources the stack patches.
pub async fn observe(
    client: &kube::Client,
    namespaces: &[String],
    targets: &[ResourceRef],
) -> Result<ObservedState, ObserveError> {
    let mut all = ObservedState::default();
    for ns in namespaces {
        observe_namespace(client, ns, &mut all)
            .await
            .map_err(|e| ObserveError::Namespace {
                namespace: ns.clone(),
                source: Box::new(e),
            })?;
    }
    let classes: Api<StorageClass> = Api::all(client.clone());
    for c in classes.list(&ListParams::default()).await? {
        all.storage_classes.push(StorageClassState {
            name: c.metadata.name.clone().unwrap_or_default(),
            allow_volume_expansion: c.allow_volume_expansion.unwrap_or(false),
        });
    }
    all.resources = observe_resources(client, targets).await?;
    observe_capacity(client, &mut all).await?;
    Ok(all)
}

/// Whether a read was refused by RBAC (the capacity check then says it
/// could not look, instead of failing the plan).
fn forbidden(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 403)
}

/// Nodes (those reporting allocatable resources), the pods bound to them
/// with their requests, and what `CSIStorageCapacity` objects publish
/// (`storage.k8s.io/v1`, else `v1beta1`, else `v1alpha1`, whichever the
/// API server serves), for the capacity check.
pub async fn observe_capacity(
    client: &kube::Client,
    out: &mut ObservedState,
) -> Result<(), ObserveError> {
    use k8s_openapi::api::core::v1::{Node, Pod};
    use plimsoll_planner::capacity::{
        cpu_millis, pod_requests, NodeState, PodState, StorageCapacityState, Taint,
    };
    let nodes = match Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
    {
        Ok(n) => Some(n),
        Err(e) if forbidden(&e) => None,
        Err(e) => return Err(e.into()),
    };
    out.nodes = nodes
        .map(|nodes| {
            nodes
                .into_iter()
                .filter_map(|n| {
                    // A node that reports no allocatable resources (no kubelet
                    // yet) says nothing about room.
                    let alloc = n.status.as_ref()?.allocatable.clone()?;
                    let spec = n.spec.clone().unwrap_or_default();
                    Some(NodeState {
                        name: n.metadata.name.clone().unwrap_or_default(),
                        cpu_millis: alloc.get("cpu").and_then(|q| cpu_millis(&q.0)).unwrap_or(0),
                        memory_bytes: alloc
                            .get("memory")
                            .and_then(|q| plimsoll_planner::state::quantity_bytes(&q.0))
                            .map_or(0, |b| b.min(u64::MAX as u128) as u64),
                        labels: n.metadata.labels.clone().unwrap_or_default(),
                        taints: spec
                            .taints
                            .unwrap_or_default()
                            .into_iter()
                            .map(|t| Taint {
                                key: t.key,
                                value: t.value.unwrap_or_default(),
                                effect: t.effect,
                            })
                            .collect(),
                        unschedulable: spec.unschedulable.unwrap_or(false),
                    })
                })
                .collect::<Vec<_>>()
        })
        .filter(|n| !n.is_empty());
    if out.nodes.is_some() {
        let pods = match Api::<Pod>::all(client.clone())
            .list(&ListParams::default())
            .await
        {
            Ok(p) => p.items,
            Err(e) if forbidden(&e) => {
                out.nodes = None;
                Vec::new()
            }
            Err(e) => return Err(e.into()),
        };
        for p in pods {
            let phase = p
                .status
                .as_ref()
                .and_then(|s| s.phase.clone())
                .unwrap_or_default();
            let Some(spec) = p
                .spec
                .as_ref()
                .filter(|_| phase != "Succeeded" && phase != "Failed")
            else {
                continue;
            };
            let Some(node) = spec.node_name.clone() else {
                continue;
            };
            let (cpu, memory) = pod_requests(&serde_json::to_value(spec).unwrap_or_default());
            let owner = p
                .metadata
                .owner_references
                .as_ref()
                .and_then(|o| o.iter().find(|o| o.controller == Some(true)).or(o.first()))
                .map(|o| format!("{}/{}", o.kind, o.name))
                .unwrap_or_default();
            out.pods.push(PodState {
                namespace: p.metadata.namespace.clone().unwrap_or_default(),
                name: p.metadata.name.clone().unwrap_or_default(),
                node,
                owner,
                cpu_millis: cpu,
                memory_bytes: memory,
            });
        }
    }
    for version in ["v1", "v1beta1", "v1alpha1"] {
        let gvk = GroupVersionKind::gvk("storage.k8s.io", version, "CSIStorageCapacity");
        let resource = match kube::discovery::pinned_kind(client, &gvk).await {
            Ok((resource, _)) => resource,
            Err(kube::Error::Api(s)) if s.code == 404 => continue,
            Err(kube::Error::Discovery(_)) => continue,
            Err(e) => return Err(e.into()),
        };
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
        let list = match api.list(&ListParams::default()).await {
            Ok(l) => l,
            Err(e) if forbidden(&e) => break,
            Err(e) => return Err(e.into()),
        };
        let bytes = |v: Option<&serde_json::Value>| {
            v.and_then(serde_json::Value::as_str)
                .and_then(plimsoll_planner::state::quantity_bytes)
                .map(|b| b.min(u64::MAX as u128) as u64)
        };
        out.storage_capacities = Some(
            list.items
                .into_iter()
                .map(|o| StorageCapacityState {
                    storage_class: o.data["storageClassName"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    segment: o
                        .data
                        .get("nodeTopology")
                        .map(|t| t.to_string())
                        .unwrap_or_default(),
                    capacity_bytes: bytes(o.data.get("capacity")).unwrap_or(0),
                    maximum_volume_bytes: bytes(o.data.get("maximumVolumeSize")),
                })
                .collect(),
        );
        break;
    }
    Ok(())
}

/// The newest revision of each Helm release in a namespace. Only the
/// newest storage Secret of each release is decoded (Helm labels each with
/// its `name` and revision `version`).
/// The storage Secret of each Helm release's newest revision (by its
/// labels), by release name; one release's only when `release` is given.
pub async fn newest_release_secrets(
    client: &kube::Client,
    namespace: &str,
    release: Option<&str>,
) -> Result<BTreeMap<String, (u64, Secret)>, kube::Error> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let selector = match release {
        Some(r) => format!("owner=helm,name={r}"),
        None => "owner=helm".to_string(),
    };
    let mut newest: BTreeMap<String, (u64, Secret)> = BTreeMap::new();
    for s in secrets
        .list(&ListParams::default().labels(&selector))
        .await?
    {
        if s.type_.as_deref() != Some("helm.sh/release.v1") {
            continue;
        }
        let labels = s.metadata.labels.clone().unwrap_or_default();
        let (Some(name), Some(revision)) = (
            labels.get("name").cloned(),
            labels.get("version").and_then(|v| v.parse::<u64>().ok()),
        ) else {
            continue;
        };
        if newest.get(&name).is_none_or(|(r, _)| *r < revision) {
            newest.insert(name, (revision, s));
        }
    }
    Ok(newest)
}

pub async fn helm_releases(
    client: &kube::Client,
    namespace: &str,
    release: Option<&str>,
) -> Result<Vec<ReleaseState>, ObserveError> {
    let newest = newest_release_secrets(client, namespace, release).await?;
    let mut out = Vec::new();
    for (_, s) in newest.into_values() {
        let name = s.metadata.name.clone().unwrap_or_default();
        let Some(field) = s.data.as_ref().and_then(|d| d.get("release")) else {
            continue;
        };
        out.push(
            decode_release(&field.0, namespace).map_err(|source| ObserveError::Release {
                secret: name.clone(),
                source,
            })?,
        );
    }
    Ok(out)
}

/// Adds one namespace's releases, StatefulSets, PVCs and Deployments,
/// and the live objects the releases' deployed manifests hold (for the
/// drift check).
async fn observe_namespace(
    client: &kube::Client,
    namespace: &str,
    out: &mut ObservedState,
) -> Result<(), ObserveError> {
    let releases = helm_releases(client, namespace, None).await?;
    // (apiVersion, kind, name) of what the deployed manifests hold.
    let wanted: std::collections::BTreeSet<(String, String, String)> = releases
        .iter()
        .flat_map(|r| plimsoll_planner::live_drift::manifest_objects(&r.manifest, namespace))
        .filter(|(_, _, ns, _, _)| ns == namespace)
        .map(|(a, k, _, n, _)| (a, k, n))
        .collect();
    out.releases.extend(releases);
    let objects = out.objects.get_or_insert_with(Vec::new);
    let mut keep = |api_version: &str, kind: &str, value: serde_json::Value| {
        let name = value
            .pointer("/metadata/name")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_string();
        if wanted.contains(&(api_version.to_string(), kind.to_string(), name.clone())) {
            objects.push(plimsoll_planner::live_drift::LiveObject {
                api_version: api_version.to_string(),
                kind: kind.to_string(),
                namespace: namespace.to_string(),
                name,
                object: without_server_fields(value),
            });
        }
    };

    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), namespace);
    let sts_list = sts.list(&ListParams::default()).await?;
    let dep_list = Api::<Deployment>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await?;
    for s in &sts_list {
        keep(
            "apps/v1",
            "StatefulSet",
            serde_json::to_value(s).unwrap_or_default(),
        );
    }
    for d in &dep_list {
        keep(
            "apps/v1",
            "Deployment",
            serde_json::to_value(d).unwrap_or_default(),
        );
    }
    // The other kinds only when a manifest holds one (the RBAC a chart
    // needs covers what it renders).
    let has = |kind: &str| wanted.iter().any(|(_, k, _)| k == kind);
    for (api_version, kind, resource) in [
        (
            "apps/v1",
            "DaemonSet",
            kube::core::ApiResource::erase::<k8s_openapi::api::apps::v1::DaemonSet>(&()),
        ),
        (
            "v1",
            "Service",
            kube::core::ApiResource::erase::<k8s_openapi::api::core::v1::Service>(&()),
        ),
        (
            "v1",
            "ConfigMap",
            kube::core::ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&()),
        ),
    ] {
        if !has(kind) {
            continue;
        }
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
        for x in api.list(&ListParams::default()).await? {
            keep(
                api_version,
                kind,
                serde_json::to_value(&x).unwrap_or_default(),
            );
        }
    }

    for s in sts_list {
        let spec = s.spec.clone().unwrap_or_default();
        out.statefulsets.push(StatefulSetState {
            name: s.metadata.name.clone().unwrap_or_default(),
            namespace: namespace.to_string(),
            uid: s.metadata.uid.clone().unwrap_or_default(),
            release: release_of(&s.metadata.labels, &s.metadata.annotations),
            replicas: spec.replicas.unwrap_or(1).max(0) as u32,
            ready_replicas: s
                .status
                .as_ref()
                .and_then(|st| st.ready_replicas)
                .unwrap_or(0)
                .max(0) as u32,
            claim_templates: spec
                .volume_claim_templates
                .unwrap_or_default()
                .iter()
                .map(|t| {
                    let ts = t.spec.clone().unwrap_or_default();
                    ClaimTemplate {
                        name: t.metadata.name.clone().unwrap_or_default(),
                        storage_class: ts.storage_class_name.clone(),
                        size: storage(ts.resources.as_ref().and_then(|r| r.requests.as_ref()))
                            .unwrap_or_default(),
                    }
                })
                .collect(),
        });
    }

    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    for p in pvcs.list(&ListParams::default()).await? {
        let spec = p.spec.clone().unwrap_or_default();
        let status = p.status.clone().unwrap_or_default();
        out.pvcs.push(PvcState {
            name: p.metadata.name.clone().unwrap_or_default(),
            namespace: namespace.to_string(),
            storage_class: spec.storage_class_name.clone(),
            request: storage(spec.resources.as_ref().and_then(|r| r.requests.as_ref()))
                .unwrap_or_default(),
            capacity: storage(status.capacity.as_ref()),
            conditions: status
                .conditions
                .unwrap_or_default()
                .iter()
                .map(|c| format!("{}={}", c.type_, c.status))
                .collect(),
        });
    }

    for d in dep_list {
        out.deployments.push(DeploymentState {
            name: d.metadata.name.clone().unwrap_or_default(),
            namespace: namespace.to_string(),
            release: release_of(&d.metadata.labels, &d.metadata.annotations),
            replicas: d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1).max(0) as u32,
            ready_replicas: d
                .status
                .as_ref()
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0)
                .max(0) as u32,
        });
    }
    Ok(())
}

/// An object without `status` and the metadata the server manages.
fn without_server_fields(mut v: serde_json::Value) -> serde_json::Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("status");
        if let Some(m) = o
            .get_mut("metadata")
            .and_then(serde_json::Value::as_object_mut)
        {
            for k in [
                "managedFields",
                "resourceVersion",
                "uid",
                "creationTimestamp",
                "generation",
            ] {
                m.remove(k);
            }
        }
    }
    v
}

/// Where a resource of any kind is served: discovery of its kind.
pub async fn api_for(
    client: &kube::Client,
    target: &ResourceRef,
) -> Result<Option<Api<DynamicObject>>, kube::Error> {
    let (group, version) = match target.api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", target.api_version.as_str()),
    };
    let gvk = GroupVersionKind::gvk(group, version, &target.kind);
    match kube::discovery::pinned_kind(client, &gvk).await {
        Ok((resource, caps)) => Ok(Some(match caps.scope {
            Scope::Namespaced => Api::namespaced_with(client.clone(), &target.namespace, &resource),
            Scope::Cluster => Api::all_with(client.clone(), &resource),
        })),
        // The kind is not served (its CRD is not installed yet).
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
        Err(kube::Error::Discovery(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Reads the resources the stack declares patches for. What the planner
/// keeps of each: the object without `status` and server-managed metadata
/// (it only decides whether a patch still changes something).
pub async fn observe_resources(
    client: &kube::Client,
    targets: &[ResourceRef],
) -> Result<Vec<ObservedResource>, ObserveError> {
    let mut out = Vec::new();
    for t in targets {
        let object = match api_for(client, t).await? {
            Some(api) => api.get_opt(&t.name).await?.map(|o| {
                let mut v = serde_json::to_value(&o).unwrap_or_default();
                if let Some(m) = v.as_object_mut() {
                    m.remove("status");
                    if let Some(meta) = m.get_mut("metadata").and_then(|x| x.as_object_mut()) {
                        meta.retain(|k, _| {
                            matches!(k.as_str(), "name" | "namespace" | "labels" | "annotations")
                        });
                    }
                }
                v
            }),
            None => None,
        };
        out.push(ObservedResource {
            target: t.clone(),
            object,
        });
    }
    Ok(out)
}

/// The health of each custom resource the desired releases render, by the
/// stack's rules (a resource not there yet, or whose kind is not served,
/// is in progress).
pub async fn observe_health(
    client: &kube::Client,
    rules: &plimsoll_planner::health::HealthRules,
    resources: &[plimsoll_planner::state::DesiredResource],
) -> Result<Vec<plimsoll_planner::state::ObservedHealth>, ObserveError> {
    use plimsoll_planner::health::{version_field, Health};
    let mut out = Vec::new();
    for r in resources {
        let field = version_field(&r.target.api_version, &r.target.kind);
        let (health, version) = match api_for(client, &r.target).await? {
            None => (
                Health::InProgress("the kind is not served (is its CRD installed?)".into()),
                None,
            ),
            Some(api) => match api.get_opt(&r.target.name).await? {
                None => (Health::InProgress("not created yet".into()), None),
                Some(o) => {
                    let object = serde_json::to_value(&o).unwrap_or_default();
                    let version = field
                        .and_then(|f| object.pointer(f))
                        .and_then(|v| v.as_str())
                        .map(str::to_string);
                    (rules.health(&object, Some(&r.object)), version)
                }
            },
        };
        out.push(plimsoll_planner::state::ObservedHealth {
            target: r.target.clone(),
            health,
            version,
        });
    }
    Ok(out)
}
