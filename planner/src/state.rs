//! Observed and desired state, as the planner sees them.

use serde::{Deserialize, Serialize};

/// Everything observed in the cluster that planning needs. Serialized by
/// `plimsoll snapshot` so a pull-request job can plan without credentials.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ObservedState {
    pub releases: Vec<ReleaseState>,
    pub statefulsets: Vec<StatefulSetState>,
    pub pvcs: Vec<PvcState>,
    pub storage_classes: Vec<StorageClassState>,
    #[serde(default)]
    pub deployments: Vec<DeploymentState>,
    /// Resources the stack file declares patches for (operator resources).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<ObservedResource>,
    /// The health of the custom resources the desired releases render, by
    /// the stack's rules (read with the desired state; absent from
    /// snapshots taken without it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub health: Vec<ObservedHealth>,
    /// Live objects of the kinds the drift check compares
    /// ([`crate::live_drift::KINDS`]) that the releases' deployed
    /// manifests hold; `None` when not read (a snapshot from before the
    /// drift check), which is no drift rather than every object deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objects: Option<Vec<crate::live_drift::LiveObject>>,
    /// The cluster's nodes (allocatable, labels, taints), for the capacity
    /// check; `None` when not read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<Vec<crate::capacity::NodeState>>,
    /// Pods bound to nodes, with their requests.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pods: Vec<crate::capacity::PodState>,
    /// What `CSIStorageCapacity` objects publish; `None` when not read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_capacities: Option<Vec<crate::capacity::StorageCapacityState>>,
}

/// A resource addressed by API version, kind, namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ResourceRef {
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl ResourceRef {
    /// A core `Secret`: every value of it is secret.
    pub fn is_secret(&self) -> bool {
        self.kind == "Secret" && self.api_version == "v1"
    }
}

impl std::fmt::Display for ResourceRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{} ({})", self.kind, self.name, self.api_version)
    }
}

/// A declared resource as observed: its object without `status` and
/// server-managed metadata, or `None` when it does not exist.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ObservedResource {
    #[serde(flatten)]
    pub target: ResourceRef,
    pub object: Option<serde_json::Value>,
}

/// A deployed Helm release, as read from its newest storage Secret.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReleaseState {
    pub name: String,
    pub namespace: String,
    pub chart: String,
    pub version: String,
    pub revision: u32,
    pub status: String,
    /// User-supplied values.
    pub values: serde_json::Value,
    /// The manifest Helm stored with the release (what it applied), for
    /// the manifest diff.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub manifest: String,
}

/// A persistent volume claim template of a StatefulSet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimTemplate {
    pub name: String,
    pub storage_class: Option<String>,
    /// Requested size, a Kubernetes quantity (`10Gi`).
    pub size: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatefulSetState {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    /// The Helm release that manages it (`meta.helm.sh/release-name`).
    pub release: Option<String>,
    pub replicas: u32,
    pub ready_replicas: u32,
    pub claim_templates: Vec<ClaimTemplate>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PvcState {
    pub name: String,
    pub namespace: String,
    pub storage_class: Option<String>,
    pub request: String,
    pub capacity: Option<String>,
    #[serde(default)]
    pub conditions: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StorageClassState {
    pub name: String,
    pub allow_volume_expansion: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeploymentState {
    pub name: String,
    pub namespace: String,
    pub release: Option<String>,
    pub replicas: u32,
    pub ready_replicas: u32,
}

/// What a release should be, from the rendered values of a revision and
/// the chart rendered with them (`helm template`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DesiredRelease {
    pub name: String,
    pub namespace: String,
    pub stage: String,
    pub chart: String,
    pub version: String,
    pub values: serde_json::Value,
    /// StatefulSets the chart renders, with their claim templates.
    pub statefulsets: Vec<DesiredStatefulSet>,
    /// Deployments the chart renders (waited for after the upgrade).
    #[serde(default)]
    pub deployments: Vec<String>,
    /// DaemonSets the chart renders (waited for after the upgrade).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub daemonsets: Vec<String>,
    /// Operator resource patches the stack file declares for the release.
    #[serde(default)]
    pub patches: Vec<DesiredPatch>,
    /// Custom resources the chart renders: after the upgrade, the plan
    /// waits until each is current by its health rule.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub custom_resources: Vec<DesiredResource>,
    /// The stack file's `readyTimeout` for this release's waits (seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_timeout: Option<u64>,
    /// Preconditions: resources that must be current before the release's
    /// first step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requires: Vec<ResourceRef>,
    /// The chart rendered with the values (`helm template`), for the
    /// manifest diff.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub manifest: String,
    /// Where the chart was pulled from, when a repository or registry
    /// serves it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pulled: Option<ChartPull>,
}

/// A chart pulled from a Helm repository or an OCI registry: its URL and
/// the digest of the archive that is rendered and applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChartPull {
    /// `https://…/chart` or `oci://…/chart`.
    pub source: String,
    /// `sha256:…` of the chart archive.
    pub digest: String,
}

/// A resource's health as read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedHealth {
    #[serde(flatten)]
    pub target: ResourceRef,
    #[serde(flatten)]
    pub health: crate::health::Health,
    /// The live value of the kind's version field
    /// ([`crate::health::version_field`]), when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// A resource a chart renders, as rendered (the desired object a health
/// rule may compare with).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DesiredResource {
    #[serde(flatten)]
    pub target: ResourceRef,
    pub object: serde_json::Value,
}

/// A JSON patch (RFC 6902) a release declares for one resource.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DesiredPatch {
    #[serde(flatten)]
    pub target: ResourceRef,
    /// The operations (a JSON array).
    pub operations: serde_json::Value,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DesiredStatefulSet {
    pub name: String,
    pub replicas: u32,
    pub claim_templates: Vec<ClaimTemplate>,
    /// `spec.persistentVolumeClaimRetentionPolicy` as the chart renders it
    /// (absent: both `Retain`, Kubernetes' default).
    #[serde(default, skip_serializing_if = "PvcRetention::is_default")]
    pub pvc_retention: PvcRetention,
}

/// What the StatefulSet controller does with claims (GA in Kubernetes
/// 1.32): `Retain` keeps them, `Delete` deletes them when the StatefulSet
/// is deleted (`when_deleted`) or scaled down past their ordinal
/// (`when_scaled`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PvcRetention {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when_deleted: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when_scaled: Option<String>,
}

impl PvcRetention {
    pub fn is_default(&self) -> bool {
        !self.deletes_when_deleted() && !self.deletes_when_scaled()
    }

    pub fn deletes_when_deleted(&self) -> bool {
        self.when_deleted.as_deref() == Some("Delete")
    }

    pub fn deletes_when_scaled(&self) -> bool {
        self.when_scaled.as_deref() == Some("Delete")
    }
}

/// Quantity in bytes (`10Gi`, `500M`, `1e3`, `1.5Gi`); `None` if malformed.
pub fn quantity_bytes(q: &str) -> Option<u128> {
    let q = q.trim();
    let split = q
        .find(|c: char| c.is_ascii_alphabetic() && c != 'e')
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let mult: u128 = match suffix {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        "Ei" => 1 << 60,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "P" => 1_000_000_000_000_000,
        "m" => return num.parse::<f64>().ok().map(|n| (n / 1000.0) as u128),
        _ => return None,
    };
    let n: f64 = num.parse().ok()?;
    if !n.is_finite() || n < 0.0 {
        return None;
    }
    Some((n * mult as f64).round() as u128)
}

#[cfg(test)]
mod tests {
    use super::quantity_bytes;

    #[test]
    fn quantities() {
        assert_eq!(quantity_bytes("10Gi"), Some(10 << 30));
        assert_eq!(quantity_bytes("1.5Gi"), Some(3 << 29));
        assert_eq!(quantity_bytes("500M"), Some(500_000_000));
        assert_eq!(quantity_bytes("1e3"), Some(1000));
        assert_eq!(quantity_bytes("7"), Some(7));
        assert_eq!(quantity_bytes("10Gb"), None);
        assert!(quantity_bytes("20Gi") < quantity_bytes("45Gi"));
    }
}
