//! Pre-flight: will the new state fit? From the desired manifests (pods of
//! Deployments, StatefulSets and DaemonSets: replicas × requests, init
//! containers by Kubernetes' rule) and the observed cluster (Nodes'
//! allocatable and taints, the requests of pods already running, which of
//! them the change replaces), an estimate of compute placement, first fit
//! decreasing, respecting node selectors, tolerations and required pod
//! anti-affinity across nodes; and the storage growth per StorageClass
//! against what the cluster publishes (`CSIStorageCapacity`).
//!
//! It is an estimate: the scheduler weighs more (affinity preferences,
//! topology spread, ports, volumes' nodes); it never says "fits" for what
//! clearly cannot.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::state::{quantity_bytes, DesiredRelease, ObservedState};

/// A node as observed: allocatable, labels, taints.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeState {
    pub name: String,
    /// CPU in millicores.
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taints: Vec<Taint>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unschedulable: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Taint {
    pub key: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
    pub effect: String,
}

/// A pod running (or bound) on a node, with its requests and owner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodState {
    pub namespace: String,
    pub name: String,
    pub node: String,
    /// `StatefulSet/NAME` or `ReplicaSet/NAME` (the owner reference).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub owner: String,
    pub cpu_millis: u64,
    pub memory_bytes: u64,
}

/// What one `CSIStorageCapacity` object publishes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageCapacityState {
    pub storage_class: String,
    /// The topology segment (its node selector, as text).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub segment: String,
    pub capacity_bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum_volume_bytes: Option<u64>,
}

/// The pods a workload of the desired state asks for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PodShape {
    pub release: String,
    pub namespace: String,
    /// `deployment/twa`.
    pub workload: String,
    pub replicas: u32,
    /// Per pod.
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub node_selector: BTreeMap<String, String>,
    pub tolerations: Vec<Value>,
    /// Required pod anti-affinity by `kubernetes.io/hostname`: at most one
    /// pod of the workload per node.
    pub one_per_node: bool,
    /// A DaemonSet: one pod on every node it may run on.
    pub per_node: bool,
}

/// A resource's totals, in its unit (millicores or bytes).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceTotals {
    /// Allocatable on the schedulable nodes.
    pub allocatable: u64,
    /// Requested by pods that stay (not replaced by the change).
    pub staying: u64,
    /// Requested by the desired pods.
    pub needed: u64,
    /// Requested by the pods that would not fit.
    pub shortfall: u64,
}

/// The compute estimate.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComputeFit {
    pub nodes: usize,
    pub cpu_millis: ResourceTotals,
    pub memory_bytes: ResourceTotals,
    /// Pods that would not fit: `ns/deployment/twa #3 (cpu 500m, memory 1Gi): why`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unplaced: Vec<String>,
    /// Each schedulable node after the placement.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub per_node: Vec<NodeUse>,
    /// Where each placed pod went: (namespace, workload, ordinal, node).
    #[serde(skip)]
    pub placements: Vec<(String, String, u32, String)>,
}

/// A node after the placement: what it has, what stays, what is placed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeUse {
    pub name: String,
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    /// Requests of the pods that stay and of the pods placed.
    pub cpu_millis_used: u64,
    pub memory_bytes_used: u64,
    /// The stack's pods placed here.
    pub pods: u32,
}

/// A StorageClass's growth and what the cluster publishes for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassGrowth {
    pub storage_class: String,
    /// New claims (StatefulSets' templates for ordinals without a claim).
    pub new_bytes: u64,
    /// Growth of existing claims.
    pub expansion_bytes: u64,
    /// What `CSIStorageCapacity` publishes (the sum over segments), or
    /// `None` when the class publishes nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_bytes: Option<u64>,
    /// The largest volume a segment can hold, when published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum_volume_bytes: Option<u64>,
    /// Claims larger than the largest volume published.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub too_large: Vec<String>,
    /// Per topology segment, the growth of the claims whose pods are
    /// placed on its nodes (with the compute placement).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub segments: Vec<SegmentUse>,
}

/// A topology segment of a class: what it publishes, what lands on it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentUse {
    /// Its node selector (`kubernetes.io/hostname=node1`).
    pub segment: String,
    pub capacity_bytes: u64,
    pub needed_bytes: u64,
}

impl ClassGrowth {
    /// No growth yet, with what `observed` publishes for the class.
    fn new(storage_class: String, observed: &ObservedState) -> ClassGrowth {
        let published = published(observed, &storage_class);
        ClassGrowth {
            storage_class,
            new_bytes: 0,
            expansion_bytes: 0,
            published_bytes: published.map(|(t, _)| t),
            maximum_volume_bytes: published.and_then(|(_, m)| m),
            too_large: Vec::new(),
            segments: Vec::new(),
        }
    }

    /// Whether the growth fits what is published (`None`: not published).
    pub fn fits(&self) -> Option<bool> {
        self.published_bytes.map(|p| {
            self.new_bytes + self.expansion_bytes <= p
                && self.too_large.is_empty()
                && self
                    .segments
                    .iter()
                    .all(|s| s.needed_bytes <= s.capacity_bytes)
        })
    }
}

/// The `matchLabels` of a segment's node topology (as observed: JSON).
fn segment_labels(segment: &str) -> BTreeMap<String, String> {
    serde_json::from_str::<Value>(segment)
        .ok()
        .and_then(|v| v.get("matchLabels").and_then(Value::as_object).cloned())
        .map(|m| {
            m.into_iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k, v.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// Spreads the growth of each class over its topology segments: a claim
/// lands in the segment of the node its pod is placed on.
fn place_on_segments(
    storage: &mut [ClassGrowth],
    claims: &[ClaimGrowth],
    placements: &[(String, String, u32, String)],
    observed: &ObservedState,
) {
    let nodes = observed.nodes.as_deref().unwrap_or(&[]);
    for g in storage.iter_mut().filter(|g| g.published_bytes.is_some()) {
        let caps: Vec<&StorageCapacityState> = observed
            .storage_capacities
            .iter()
            .flatten()
            .filter(|c| c.storage_class == g.storage_class && !c.segment.is_empty())
            .collect();
        for c in claims
            .iter()
            .filter(|c| c.storage_class == g.storage_class && c.growth > 0)
        {
            let Some(node) = placements
                .iter()
                .find(|p| {
                    p.0 == c.namespace
                        && p.1 == format!("statefulset/{}", c.statefulset)
                        && p.2 == c.ordinal
                })
                .and_then(|p| nodes.iter().find(|n| n.name == p.3))
            else {
                continue;
            };
            let Some(cap) = caps.iter().find(|cap| {
                let want = segment_labels(&cap.segment);
                !want.is_empty() && want.iter().all(|(k, v)| node.labels.get(k) == Some(v))
            }) else {
                continue;
            };
            let name = segment_labels(&cap.segment)
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",");
            match g.segments.iter_mut().find(|s| s.segment == name) {
                Some(s) => s.needed_bytes += c.growth,
                None => g.segments.push(SegmentUse {
                    segment: name,
                    capacity_bytes: cap.capacity_bytes,
                    needed_bytes: c.growth,
                }),
            }
        }
    }
}

/// The capacity section of a plan.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capacity {
    /// `None` when the nodes were not observed (an old snapshot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute: Option<ComputeFit>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub storage: Vec<ClassGrowth>,
    /// The stack file's storage pools, with the growth placed on them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pools: Vec<PoolFit>,
}

impl PoolFit {
    /// One line per node, and the claims that find no room.
    pub fn lines(&self) -> Vec<String> {
        let kind = if self.replicated {
            format!("replicated × {}", self.replicas)
        } else {
            "local".to_string()
        };
        let mut out = vec![format!(
            "storage pool {} ({kind}): {}",
            self.storage_class,
            self.per_node
                .iter()
                .map(|n| format!(
                    "{} {} of {} free",
                    n.name,
                    bytes_text(n.needed_bytes),
                    bytes_text(n.free_bytes)
                ))
                .collect::<Vec<_>>()
                .join(", ")
        )];
        for u in &self.unplaced {
            out.push(format!("  does not fit: {u}"));
        }
        out
    }
}

impl Capacity {
    /// What does not fit, one line each (empty: it fits, as far as is known).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(c) = &self.compute {
            if !c.unplaced.is_empty() {
                out.push(format!(
                    "{} pod(s) would not fit on the {} node(s): short of {} CPU and {} memory",
                    c.unplaced.len(),
                    c.nodes,
                    cpu_text(c.cpu_millis.shortfall),
                    bytes_text(c.memory_bytes.shortfall)
                ));
            }
        }
        for p in &self.pools {
            if !p.unplaced.is_empty() {
                out.push(format!(
                    "storage pool {}: {} claim(s) find no room: {}",
                    p.storage_class,
                    p.unplaced.len(),
                    p.unplaced.join("; ")
                ));
            }
        }
        for s in &self.storage {
            for seg in s
                .segments
                .iter()
                .filter(|x| x.needed_bytes > x.capacity_bytes)
            {
                out.push(format!(
                    "StorageClass {} in segment {}: {} more is needed there, {} is published",
                    s.storage_class,
                    seg.segment,
                    bytes_text(seg.needed_bytes),
                    bytes_text(seg.capacity_bytes)
                ));
            }
            if s.new_bytes + s.expansion_bytes > s.published_bytes.unwrap_or(u64::MAX)
                || !s.too_large.is_empty()
            {
                out.push(format!(
                    "StorageClass {}: {} more is needed, {} is published{}",
                    s.storage_class,
                    bytes_text(s.new_bytes + s.expansion_bytes),
                    bytes_text(s.published_bytes.unwrap_or(0)),
                    if s.too_large.is_empty() {
                        String::new()
                    } else {
                        format!(
                            "; larger than the largest volume ({}): {}",
                            bytes_text(s.maximum_volume_bytes.unwrap_or(0)),
                            s.too_large.join(", ")
                        )
                    }
                ));
            }
        }
        out
    }

    /// Lines for the text plan.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        match &self.compute {
            Some(c) => {
                out.push(format!(
                    "compute (an estimate, first fit on {} node(s)): CPU {} needed, {} free of {}; memory {} needed, {} free of {}",
                    c.nodes,
                    cpu_text(c.cpu_millis.needed),
                    cpu_text(c.cpu_millis.allocatable.saturating_sub(c.cpu_millis.staying)),
                    cpu_text(c.cpu_millis.allocatable),
                    bytes_text(c.memory_bytes.needed),
                    bytes_text(c.memory_bytes.allocatable.saturating_sub(c.memory_bytes.staying)),
                    bytes_text(c.memory_bytes.allocatable),
                ));
                for u in &c.unplaced {
                    out.push(format!("  does not fit: {u}"));
                }
            }
            None => out.push("compute: the nodes were not observed".into()),
        }
        for s in &self.storage {
            let growth = format!(
                "{} new, {} expansion",
                bytes_text(s.new_bytes),
                bytes_text(s.expansion_bytes)
            );
            out.push(match s.published_bytes {
                Some(p) => format!(
                    "storage class {}: {growth}; {} published{}",
                    s.storage_class,
                    bytes_text(p),
                    match s.fits() {
                        Some(false) => " — does not fit",
                        _ => "",
                    }
                ),
                None if self.pools.iter().any(|p| p.storage_class == s.storage_class) => format!(
                    "storage class {}: {growth}; placed on the declared pool below",
                    s.storage_class
                ),
                None => format!(
                    "storage class {}: {growth}; the class publishes no capacity (CSIStorageCapacity), not checked",
                    s.storage_class
                ),
            });
            for seg in &s.segments {
                out.push(format!(
                    "  segment {}: {} needed, {} published",
                    seg.segment,
                    bytes_text(seg.needed_bytes),
                    bytes_text(seg.capacity_bytes)
                ));
            }
        }
        for p in &self.pools {
            out.extend(p.lines());
        }
        out
    }
}

/// `1500m` as `1.5`, whole cores plainly.
pub fn cpu_text(millis: u64) -> String {
    if millis.is_multiple_of(1000) {
        format!("{}", millis / 1000)
    } else {
        format!("{millis}m")
    }
}

/// Bytes in the largest binary unit that keeps one decimal.
pub fn bytes_text(b: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("Ti", 1 << 40),
        ("Gi", 1 << 30),
        ("Mi", 1 << 20),
        ("Ki", 1 << 10),
    ];
    for (unit, size) in UNITS {
        if b >= size {
            let v = b as f64 / size as f64;
            return if (v - v.round()).abs() < 0.05 {
                format!("{}{unit}", v.round() as u64)
            } else {
                format!("{v:.1}{unit}")
            };
        }
    }
    format!("{b}")
}

/// Millicores of a CPU quantity (`500m`, `2`, `0.5`).
pub fn cpu_millis(q: &str) -> Option<u64> {
    let q = q.trim();
    if let Some(m) = q.strip_suffix('m') {
        return m.parse::<f64>().ok().map(|v| v.ceil() as u64);
    }
    let n: f64 = q.parse().ok()?;
    (n.is_finite() && n >= 0.0).then(|| (n * 1000.0).ceil() as u64)
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// (cpu millis, memory bytes) a container requests (limits stand in for
/// missing requests, as the API server defaults them).
fn container_requests(c: &Value) -> (u64, u64) {
    let get = |r: &str| {
        c.pointer(&format!("/resources/requests/{r}"))
            .or_else(|| c.pointer(&format!("/resources/limits/{r}")))
            .and_then(scalar_text)
    };
    (
        get("cpu").and_then(|q| cpu_millis(&q)).unwrap_or(0),
        get("memory")
            .and_then(|q| quantity_bytes(&q))
            .map_or(0, |b| b.min(u64::MAX as u128) as u64),
    )
}

/// A pod spec's effective requests, by Kubernetes' rule: the larger of the
/// largest init container and the sum of the containers (sidecars, init
/// containers that keep running, count in the sum).
pub fn pod_requests(spec: &Value) -> (u64, u64) {
    let list = |k: &str| {
        spec.get(k)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let (mut cpu, mut mem) = (0u64, 0u64);
    for c in list("containers") {
        let (c_cpu, c_mem) = container_requests(&c);
        cpu += c_cpu;
        mem += c_mem;
    }
    let (mut init_cpu, mut init_mem) = (0u64, 0u64);
    // Sidecars started so far run beside each later init container.
    let (mut side_cpu, mut side_mem) = (0u64, 0u64);
    for c in list("initContainers") {
        let (c_cpu, c_mem) = container_requests(&c);
        if c.get("restartPolicy").and_then(Value::as_str) == Some("Always") {
            side_cpu += c_cpu;
            side_mem += c_mem;
            cpu += c_cpu;
            mem += c_mem;
        } else {
            init_cpu = init_cpu.max(side_cpu + c_cpu);
            init_mem = init_mem.max(side_mem + c_mem);
        }
    }
    (cpu.max(init_cpu), mem.max(init_mem))
}

/// The pods the workloads of a rendered manifest ask for.
pub fn pods_of_manifest(release: &str, namespace: &str, manifest: &str) -> Vec<PodShape> {
    let Ok(docs) = plimsoll_yaml::parse_documents(manifest.as_bytes(), 0) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for doc in docs.iter().take(10_000) {
        let Some(v) = plimsoll_yaml::json::to_json(doc.unwrap_document())
            .ok()
            .and_then(|j| serde_json::from_str::<Value>(&j).ok())
        else {
            continue;
        };
        let kind = v.get("kind").and_then(Value::as_str).unwrap_or_default();
        if !matches!(kind, "Deployment" | "StatefulSet" | "DaemonSet") {
            continue;
        }
        let name = v
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let spec = v
            .pointer("/spec/template/spec")
            .cloned()
            .unwrap_or(Value::Null);
        let (cpu, memory) = pod_requests(&spec);
        let replicas = v
            .pointer("/spec/replicas")
            .and_then(|r| {
                r.as_u64()
                    .or_else(|| r.as_str().and_then(|s| s.parse().ok()))
            })
            .unwrap_or(1)
            .min(10_000) as u32;
        let one_per_node = spec
            .pointer("/affinity/podAntiAffinity/requiredDuringSchedulingIgnoredDuringExecution")
            .and_then(Value::as_array)
            .is_some_and(|terms| {
                terms.iter().any(|t| {
                    t.get("topologyKey").and_then(Value::as_str) == Some("kubernetes.io/hostname")
                })
            });
        out.push(PodShape {
            release: release.to_string(),
            namespace: v
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or(namespace)
                .to_string(),
            workload: format!("{}/{name}", kind.to_ascii_lowercase()),
            replicas,
            cpu_millis: cpu,
            memory_bytes: memory,
            node_selector: spec
                .get("nodeSelector")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| scalar_text(v).map(|v| (k.clone(), v)))
                        .collect()
                })
                .unwrap_or_default(),
            tolerations: spec
                .get("tolerations")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
            one_per_node,
            per_node: kind == "DaemonSet",
        });
    }
    // By name, not by the helm's document order (see
    // `workloads_from_manifests`).
    out.sort_by(|a, b| (&a.namespace, &a.workload).cmp(&(&b.namespace, &b.workload)));
    out
}

/// Whether a pod with `tolerations` may be scheduled on a node with
/// `taints` (NoSchedule and NoExecute must be tolerated).
fn tolerates(tolerations: &[Value], taints: &[Taint]) -> bool {
    taints
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .all(|t| {
            tolerations.iter().any(|tol| {
                let s = |k: &str| tol.get(k).and_then(Value::as_str).unwrap_or("");
                let key_ok = s("key").is_empty() && s("operator") == "Exists" || s("key") == t.key;
                let value_ok = s("operator") == "Exists" || s("value") == t.value;
                let effect_ok = s("effect").is_empty() || s("effect") == t.effect;
                key_ok && value_ok && effect_ok
            })
        })
}

fn eligible(shape: &PodShape, node: &NodeState) -> bool {
    !node.unschedulable
        && shape
            .node_selector
            .iter()
            .all(|(k, v)| node.labels.get(k) == Some(v))
        && tolerates(&shape.tolerations, &node.taints)
}

/// Whether a running pod belongs to a workload of the desired state (it is
/// replaced by the change): its StatefulSet, or a ReplicaSet of the
/// Deployment (`NAME-HASH`).
fn replaced_by(pod: &PodState, shapes: &[PodShape]) -> bool {
    shapes.iter().any(|s| {
        if s.namespace != pod.namespace {
            return false;
        }
        let (kind, name) = s.workload.split_once('/').unwrap_or_default();
        match (kind, pod.owner.split_once('/')) {
            ("statefulset", Some(("StatefulSet", owner))) => owner == name,
            ("daemonset", Some(("DaemonSet", owner))) => owner == name,
            ("deployment", Some(("ReplicaSet", owner))) => owner
                .strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('-') && !rest[1..].contains('-')),
            _ => false,
        }
    })
}

/// The compute estimate: every desired pod placed first fit, largest
/// first, on the room left by the pods that stay.
pub fn compute_fit(shapes: &[PodShape], nodes: &[NodeState], pods: &[PodState]) -> ComputeFit {
    let schedulable: Vec<&NodeState> = nodes.iter().filter(|n| !n.unschedulable).collect();
    let mut free: BTreeMap<&str, (i128, i128)> = schedulable
        .iter()
        .map(|n| {
            (
                n.name.as_str(),
                (n.cpu_millis as i128, n.memory_bytes as i128),
            )
        })
        .collect();
    let mut fit = ComputeFit {
        nodes: schedulable.len(),
        ..ComputeFit::default()
    };
    for n in &schedulable {
        fit.cpu_millis.allocatable += n.cpu_millis;
        fit.memory_bytes.allocatable += n.memory_bytes;
    }
    for p in pods {
        if replaced_by(p, shapes) {
            continue;
        }
        if let Some(f) = free.get_mut(p.node.as_str()) {
            f.0 -= p.cpu_millis as i128;
            f.1 -= p.memory_bytes as i128;
            fit.cpu_millis.staying += p.cpu_millis;
            fit.memory_bytes.staying += p.memory_bytes;
        }
    }
    // One entry per pod; a DaemonSet's pods are pinned to their nodes.
    let mut wanted: Vec<(&PodShape, u32, Option<&str>)> = Vec::new();
    for s in shapes {
        if s.per_node {
            for n in schedulable.iter().filter(|n| eligible(s, n)) {
                wanted.push((s, 0, Some(n.name.as_str())));
            }
        } else {
            for i in 0..s.replicas {
                wanted.push((s, i, None));
            }
        }
    }
    // Largest first: CPU, then memory, then a stable order.
    wanted.sort_by(|a, b| {
        (b.0.cpu_millis, b.0.memory_bytes)
            .cmp(&(a.0.cpu_millis, a.0.memory_bytes))
            .then_with(|| {
                (&a.0.namespace, &a.0.workload, a.1).cmp(&(&b.0.namespace, &b.0.workload, b.1))
            })
    });
    let mut placed: BTreeMap<(&str, &str, &str), ()> = BTreeMap::new();
    for (shape, ordinal, pinned) in wanted {
        fit.cpu_millis.needed += shape.cpu_millis;
        fit.memory_bytes.needed += shape.memory_bytes;
        let (cpu, mem) = (shape.cpu_millis as i128, shape.memory_bytes as i128);
        let mut why = "no node it may run on (node selector, taints)";
        let mut chosen = None;
        for n in &schedulable {
            if pinned.is_some_and(|p| p != n.name) || !eligible(shape, n) {
                continue;
            }
            if shape.one_per_node
                && placed.contains_key(&(
                    shape.namespace.as_str(),
                    shape.workload.as_str(),
                    n.name.as_str(),
                ))
            {
                why = "one per node (required anti-affinity) and every eligible node has one";
                continue;
            }
            let f = free[n.name.as_str()];
            if f.0 >= cpu && f.1 >= mem {
                chosen = Some(n.name.as_str());
                break;
            }
            why = "not enough CPU or memory left on any eligible node";
        }
        match chosen {
            Some(node) => {
                if let Some(f) = free.get_mut(node) {
                    f.0 -= cpu;
                    f.1 -= mem;
                }
                fit.placements.push((
                    shape.namespace.clone(),
                    shape.workload.clone(),
                    ordinal,
                    node.to_string(),
                ));
                placed.insert(
                    (shape.namespace.as_str(), shape.workload.as_str(), node),
                    (),
                );
            }
            None => {
                fit.cpu_millis.shortfall += shape.cpu_millis;
                fit.memory_bytes.shortfall += shape.memory_bytes;
                let which = if shape.per_node {
                    format!("on {}", pinned.unwrap_or(""))
                } else {
                    format!("#{ordinal}")
                };
                fit.unplaced.push(format!(
                    "{}/{} {which} (cpu {}, memory {}): {why}",
                    shape.namespace,
                    shape.workload,
                    cpu_text(shape.cpu_millis),
                    bytes_text(shape.memory_bytes)
                ));
            }
        }
    }
    fit.unplaced.sort();
    fit.per_node = schedulable
        .iter()
        .map(|n| {
            let (cpu, mem) = free[n.name.as_str()];
            NodeUse {
                name: n.name.clone(),
                cpu_millis: n.cpu_millis,
                memory_bytes: n.memory_bytes,
                cpu_millis_used: (n.cpu_millis as i128 - cpu).max(0) as u64,
                memory_bytes_used: (n.memory_bytes as i128 - mem).max(0) as u64,
                pods: fit.placements.iter().filter(|p| p.3 == n.name).count() as u32,
            }
        })
        .collect();
    fit
}

/// One claim of a desired StatefulSet and how much it grows (all of it
/// when it does not exist yet).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimGrowth {
    pub namespace: String,
    pub statefulset: String,
    pub ordinal: u32,
    pub pvc: String,
    pub storage_class: String,
    pub size: u64,
    pub growth: u64,
    pub new: bool,
}

/// Every claim of the desired StatefulSets, with its growth against
/// `observed` (no observation: every claim is new).
pub fn claim_growth(
    desired: &[DesiredRelease],
    observed: Option<&ObservedState>,
) -> Vec<ClaimGrowth> {
    let mut out = Vec::new();
    for d in desired {
        for s in &d.statefulsets {
            for t in &s.claim_templates {
                let Some(size) = quantity_bytes(&t.size).map(|b| b.min(u64::MAX as u128) as u64)
                else {
                    continue;
                };
                for i in 0..s.replicas.min(10_000) {
                    let pvc = format!("{}-{}-{i}", t.name, s.name);
                    let existing = observed.and_then(|o| {
                        o.pvcs
                            .iter()
                            .find(|p| p.namespace == d.namespace && p.name == pvc)
                    });
                    let now = existing.map(|p| quantity_bytes(&p.request).unwrap_or(0) as u64);
                    out.push(ClaimGrowth {
                        namespace: d.namespace.clone(),
                        statefulset: s.name.clone(),
                        ordinal: i,
                        storage_class: t
                            .storage_class
                            .clone()
                            .or_else(|| existing.and_then(|p| p.storage_class.clone()))
                            .unwrap_or_else(|| "(default)".to_string()),
                        pvc,
                        size,
                        growth: now.map_or(size, |n| size.saturating_sub(n)),
                        new: existing.is_none(),
                    });
                }
            }
        }
    }
    out
}

/// Storage growth per class: claims of the desired StatefulSets that do
/// not exist yet, and growth of those that do.
pub fn storage_growth(desired: &[DesiredRelease], observed: &ObservedState) -> Vec<ClassGrowth> {
    let mut by_class: BTreeMap<String, ClassGrowth> = BTreeMap::new();
    for c in claim_growth(desired, Some(observed)) {
        let g = by_class
            .entry(c.storage_class.clone())
            .or_insert_with(|| ClassGrowth::new(c.storage_class.clone(), observed));
        if c.new {
            g.new_bytes += c.growth;
        } else {
            g.expansion_bytes += c.growth;
        }
        if c.growth > 0 && g.maximum_volume_bytes.is_some_and(|max| c.size > max) {
            g.too_large.push(format!(
                "{}/{} ({})",
                c.namespace,
                c.pvc,
                bytes_text(c.size)
            ));
        }
    }
    let mut out: Vec<ClassGrowth> = by_class.into_values().collect();
    out.retain(|g| g.new_bytes + g.expansion_bytes > 0);
    out
}

/// A storage pool the stack file declares (`storagePools:`), for classes
/// that publish nothing: local (a volume group on each node: a claim is
/// stored on its pod's node) or replicated (a claim stored `replicas`
/// times, on as many nodes), with the free space of each node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoragePool {
    pub storage_class: String,
    pub replicated: bool,
    /// Copies of each claim (1 for a local pool).
    pub replicas: u32,
    /// Free bytes per node.
    pub free: BTreeMap<String, u64>,
}

/// A pool's estimate: per node what it has free and what the growth needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolFit {
    pub storage_class: String,
    pub replicated: bool,
    pub replicas: u32,
    pub per_node: Vec<PoolNode>,
    /// Claims (or replicas of them) that find no node with room.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unplaced: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolNode {
    pub name: String,
    pub free_bytes: u64,
    pub needed_bytes: u64,
}

/// Places each claim's growth on the pool's nodes: a local claim on the
/// node its pod was placed on (else the node with the most room), each
/// replica of a replicated claim on a different node, most room first.
pub fn pool_fit(
    pool: &StoragePool,
    claims: &[ClaimGrowth],
    placements: &[(String, String, u32, String)],
) -> PoolFit {
    let mut room: BTreeMap<&str, (u64, u64)> = pool
        .free
        .iter()
        .map(|(n, f)| (n.as_str(), (*f, 0u64)))
        .collect();
    let mut unplaced = Vec::new();
    let mut mine: Vec<&ClaimGrowth> = claims
        .iter()
        .filter(|c| c.storage_class == pool.storage_class && c.growth > 0)
        .collect();
    mine.sort_by(|a, b| b.growth.cmp(&a.growth).then_with(|| a.pvc.cmp(&b.pvc)));
    for c in mine {
        let copies = if pool.replicated {
            pool.replicas.max(1)
        } else {
            1
        };
        let pinned = (!pool.replicated)
            .then(|| {
                placements
                    .iter()
                    .find(|p| {
                        p.0 == c.namespace
                            && p.1 == format!("statefulset/{}", c.statefulset)
                            && p.2 == c.ordinal
                    })
                    .map(|p| p.3.as_str())
            })
            .flatten()
            .filter(|n| room.contains_key(n));
        let mut chosen: Vec<&str> = Vec::new();
        for _ in 0..copies {
            let candidate = match pinned {
                Some(n) if chosen.is_empty() => {
                    Some(n).filter(|n| room[n].0 >= room[n].1 + c.growth)
                }
                _ => room
                    .iter()
                    .filter(|(n, (free, used))| !chosen.contains(n) && *free >= used + c.growth)
                    .max_by_key(|(_, (free, used))| free - used)
                    .map(|(n, _)| *n),
            };
            match candidate {
                Some(n) => chosen.push(n),
                None => break,
            }
        }
        if chosen.len() < copies as usize {
            unplaced.push(format!(
                "{}/{} ({}{}): {}",
                c.namespace,
                c.pvc,
                bytes_text(c.growth),
                if copies > 1 {
                    format!(" × {copies}")
                } else {
                    String::new()
                },
                match pinned {
                    Some(n) => format!("its pod's node {n} has not enough room"),
                    None => format!("fewer than {copies} node(s) with room"),
                }
            ));
            continue;
        }
        for n in chosen {
            if let Some(r) = room.get_mut(n) {
                r.1 += c.growth;
            }
        }
    }
    PoolFit {
        storage_class: pool.storage_class.clone(),
        replicated: pool.replicated,
        replicas: pool.replicas,
        per_node: room
            .into_iter()
            .map(|(n, (free, used))| PoolNode {
                name: n.to_string(),
                free_bytes: free,
                needed_bytes: used,
            })
            .collect(),
        unplaced,
    }
}

/// The capacity a class publishes (sum over segments) and the largest
/// volume any segment takes.
fn published(observed: &ObservedState, class: &str) -> Option<(u64, Option<u64>)> {
    let caps: Vec<&StorageCapacityState> = observed
        .storage_capacities
        .iter()
        .flatten()
        .filter(|c| c.storage_class == class)
        .collect();
    if caps.is_empty() {
        return None;
    }
    let total = caps.iter().map(|c| c.capacity_bytes).sum();
    let max = caps
        .iter()
        .map(|c| c.maximum_volume_bytes.unwrap_or(c.capacity_bytes))
        .max();
    Some((total, max))
}

/// One workload's need, for `plimsoll estimate`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadNeed {
    pub release: String,
    pub namespace: String,
    pub workload: String,
    /// Pods (a DaemonSet: one per node, counted once here).
    pub pods: u32,
    pub cpu_millis_per_pod: u64,
    pub memory_bytes_per_pod: u64,
}

/// A StorageClass's need, for `plimsoll estimate`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassNeed {
    pub storage_class: String,
    pub claims: u32,
    pub bytes: u64,
    /// Of which not yet claimed or grown (with a cluster or snapshot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub growth_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_bytes: Option<u64>,
}

/// What a stack needs, and beside it what a cluster has free.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Estimate {
    pub workloads: Vec<WorkloadNeed>,
    pub pods: u32,
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    /// The largest pod by CPU, then memory: the smallest node that can
    /// hold it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub largest_pod: Option<String>,
    pub storage: Vec<ClassNeed>,
    /// The stack placed on the cluster (its own pods replaced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ComputeFit>,
    /// The declared storage pools with the claims placed on them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pools: Vec<PoolFit>,
}

/// What the desired state needs; with `observed`, beside what is free.
pub fn estimate(
    desired: &[DesiredRelease],
    observed: Option<&ObservedState>,
    pools: &[StoragePool],
) -> Estimate {
    let shapes: Vec<PodShape> = desired
        .iter()
        .flat_map(|d| pods_of_manifest(&d.name, &d.namespace, &d.manifest))
        .collect();
    let workloads: Vec<WorkloadNeed> = shapes
        .iter()
        .map(|s| WorkloadNeed {
            release: s.release.clone(),
            namespace: s.namespace.clone(),
            workload: s.workload.clone(),
            pods: if s.per_node { 1 } else { s.replicas },
            cpu_millis_per_pod: s.cpu_millis,
            memory_bytes_per_pod: s.memory_bytes,
        })
        .collect();
    let largest = shapes
        .iter()
        .filter(|s| s.per_node || s.replicas > 0)
        .max_by_key(|s| (s.cpu_millis, s.memory_bytes));
    let mut storage: BTreeMap<String, ClassNeed> = BTreeMap::new();
    for d in desired {
        for s in &d.statefulsets {
            for t in &s.claim_templates {
                let class = t
                    .storage_class
                    .clone()
                    .unwrap_or_else(|| "(default)".into());
                let n = storage.entry(class.clone()).or_insert(ClassNeed {
                    storage_class: class,
                    claims: 0,
                    bytes: 0,
                    growth_bytes: None,
                    published_bytes: None,
                });
                n.claims += s.replicas;
                n.bytes += quantity_bytes(&t.size).unwrap_or(0) as u64 * u64::from(s.replicas);
            }
        }
    }
    if let Some(o) = observed {
        for g in storage_growth(desired, o) {
            if let Some(n) = storage.get_mut(&g.storage_class) {
                n.growth_bytes = Some(g.new_bytes + g.expansion_bytes);
                n.published_bytes = g.published_bytes;
            }
        }
        for n in storage.values_mut() {
            n.growth_bytes.get_or_insert(0);
            if n.published_bytes.is_none() {
                n.published_bytes = published(o, &n.storage_class).map(|(t, _)| t);
            }
        }
    }
    let cluster = observed
        .and_then(|o| o.nodes.as_ref().map(|n| (o, n)))
        .map(|(o, nodes)| compute_fit(&shapes, nodes, &o.pods));
    let claims = claim_growth(desired, observed);
    let placements = cluster
        .as_ref()
        .map(|c| c.placements.as_slice())
        .unwrap_or(&[]);
    let pools = pools
        .iter()
        .map(|p| pool_fit(p, &claims, placements))
        .collect();
    Estimate {
        pools,
        pods: workloads.iter().map(|w| w.pods).sum(),
        cpu_millis: workloads
            .iter()
            .map(|w| w.cpu_millis_per_pod * u64::from(w.pods))
            .sum(),
        memory_bytes: workloads
            .iter()
            .map(|w| w.memory_bytes_per_pod * u64::from(w.pods))
            .sum(),
        largest_pod: largest.map(|s| {
            format!(
                "{}/{} (cpu {}, memory {})",
                s.namespace,
                s.workload,
                cpu_text(s.cpu_millis),
                bytes_text(s.memory_bytes)
            )
        }),
        workloads,
        storage: storage.into_values().collect(),
        cluster,
    }
}

impl Estimate {
    /// The estimate as tables, for a terminal.
    pub fn to_text(&self) -> String {
        let mut out = String::from(
            "Requests of the stack's pods (an estimate: requests, not use)

",
        );
        out.push_str(&format!(
            "{:<28} {:<40} {:>5} {:>9} {:>11} {:>9} {:>11}
",
            "RELEASE", "WORKLOAD", "PODS", "CPU/POD", "MEMORY/POD", "CPU", "MEMORY"
        ));
        for w in &self.workloads {
            out.push_str(&format!(
                "{:<28} {:<40} {:>5} {:>9} {:>11} {:>9} {:>11}
",
                w.release,
                w.workload,
                w.pods,
                cpu_text(w.cpu_millis_per_pod),
                bytes_text(w.memory_bytes_per_pod),
                cpu_text(w.cpu_millis_per_pod * u64::from(w.pods)),
                bytes_text(w.memory_bytes_per_pod * u64::from(w.pods)),
            ));
        }
        out.push_str(&format!(
            "{:<28} {:<40} {:>5} {:>9} {:>11} {:>9} {:>11}
",
            "total",
            "",
            self.pods,
            "",
            "",
            cpu_text(self.cpu_millis),
            bytes_text(self.memory_bytes)
        ));
        if let Some(l) = &self.largest_pod {
            out.push_str(&format!(
                "largest pod: {l}: every node it may run on needs at least that free
"
            ));
        }
        if !self.storage.is_empty() {
            out.push_str(&format!(
                "
{:<32} {:>6} {:>10} {:>10} {:>10}
",
                "STORAGE CLASS", "CLAIMS", "SIZE", "GROWTH", "PUBLISHED"
            ));
            for s in &self.storage {
                out.push_str(&format!(
                    "{:<32} {:>6} {:>10} {:>10} {:>10}
",
                    s.storage_class,
                    s.claims,
                    bytes_text(s.bytes),
                    s.growth_bytes.map(bytes_text).unwrap_or_else(|| "-".into()),
                    s.published_bytes
                        .map(bytes_text)
                        .unwrap_or_else(|| "-".into()),
                ));
            }
        }
        if !self.pools.is_empty() {
            out.push('\n');
            for p in &self.pools {
                for line in p.lines() {
                    out.push_str(&format!("{line}\n"));
                }
            }
        }
        if let Some(c) = &self.cluster {
            out.push_str(&format!(
                "\nOn the cluster ({} node(s)): CPU {} needed, {} free of {}; memory {} needed, {} free of {}
",
                c.nodes,
                cpu_text(c.cpu_millis.needed),
                cpu_text(
                    c.cpu_millis
                        .allocatable
                        .saturating_sub(c.cpu_millis.staying)
                ),
                cpu_text(c.cpu_millis.allocatable),
                bytes_text(c.memory_bytes.needed),
                bytes_text(
                    c.memory_bytes
                        .allocatable
                        .saturating_sub(c.memory_bytes.staying)
                ),
                bytes_text(c.memory_bytes.allocatable),
            ));
            out.push_str(&format!(
                "\n{:<32} {:>5} {:>17} {:>21}\n",
                "NODE", "PODS", "CPU USED/ALLOC", "MEMORY USED/ALLOC"
            ));
            for n in &c.per_node {
                out.push_str(&format!(
                    "{:<32} {:>5} {:>17} {:>21}\n",
                    n.name,
                    n.pods,
                    format!("{}/{}", cpu_text(n.cpu_millis_used), cpu_text(n.cpu_millis)),
                    format!(
                        "{}/{}",
                        bytes_text(n.memory_bytes_used),
                        bytes_text(n.memory_bytes)
                    ),
                ));
            }
            if c.unplaced.is_empty() {
                out.push_str(
                    "fits (first fit, largest pods first)
",
                );
            } else {
                out.push_str(&format!(
                    "does not fit: short of {} CPU and {} memory
",
                    cpu_text(c.cpu_millis.shortfall),
                    bytes_text(c.memory_bytes.shortfall)
                ));
                for u in &c.unplaced {
                    out.push_str(&format!(
                        "  {u}
"
                    ));
                }
            }
        }
        out
    }
}

/// Adds the growth of claims an operator keeps (namespace, PVC, new size)
/// to their classes.
pub fn add_operator_growth(
    capacity: &mut Capacity,
    observed: &ObservedState,
    claims: &[(String, String, String)],
) {
    for (namespace, pvc, to) in claims {
        let Some(p) = observed
            .pvcs
            .iter()
            .find(|p| p.namespace == *namespace && p.name == *pvc)
        else {
            continue;
        };
        let now = quantity_bytes(&p.request).unwrap_or(0) as u64;
        let to = quantity_bytes(to).unwrap_or(0) as u64;
        let class = p
            .storage_class
            .clone()
            .unwrap_or_else(|| "(default)".into());
        let at = match capacity
            .storage
            .iter()
            .position(|g| g.storage_class == class)
        {
            Some(i) => i,
            None => {
                capacity.storage.push(ClassGrowth::new(class, observed));
                capacity.storage.len() - 1
            }
        };
        capacity.storage[at].expansion_bytes += to.saturating_sub(now);
    }
    capacity
        .storage
        .retain(|g| g.new_bytes + g.expansion_bytes > 0);
    capacity
        .storage
        .sort_by(|a, b| a.storage_class.cmp(&b.storage_class));
}

/// The capacity section for a plan.
pub fn capacity(
    desired: &[DesiredRelease],
    observed: &ObservedState,
    pools: &[StoragePool],
) -> Capacity {
    let shapes: Vec<PodShape> = desired
        .iter()
        .flat_map(|d| pods_of_manifest(&d.name, &d.namespace, &d.manifest))
        .collect();
    let compute = observed
        .nodes
        .as_ref()
        .map(|nodes| compute_fit(&shapes, nodes, &observed.pods));
    let claims = claim_growth(desired, Some(observed));
    let placements = compute
        .as_ref()
        .map(|c| c.placements.as_slice())
        .unwrap_or(&[]);
    let mut storage = storage_growth(desired, observed);
    place_on_segments(&mut storage, &claims, placements, observed);
    Capacity {
        pools: pools
            .iter()
            .map(|p| pool_fit(p, &claims, placements))
            .filter(|f| f.per_node.iter().any(|n| n.needed_bytes > 0) || !f.unplaced.is_empty())
            .collect(),
        compute,
        storage,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, cpu: u64, mem_gi: u64) -> NodeState {
        NodeState {
            name: name.into(),
            cpu_millis: cpu,
            memory_bytes: mem_gi << 30,
            labels: BTreeMap::from([("kubernetes.io/hostname".to_string(), name.to_string())]),
            taints: vec![],
            unschedulable: false,
        }
    }

    const DB: &str = "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: db}\nspec:\n  replicas: 3\n  template:\n    spec:\n      affinity:\n        podAntiAffinity:\n          requiredDuringSchedulingIgnoredDuringExecution:\n            - topologyKey: kubernetes.io/hostname\n              labelSelector: {matchLabels: {app: db}}\n      initContainers:\n        - {name: init, resources: {requests: {cpu: 3, memory: 1Gi}}}\n      containers:\n        - {name: db, resources: {requests: {cpu: 1500m, memory: 4Gi}}}\n        - {name: exporter, resources: {limits: {cpu: 100m, memory: 128Mi}}}\n";

    #[test]
    fn requests_by_kubernetes_rules() {
        let shapes = pods_of_manifest("data", "tp", DB);
        assert_eq!(shapes.len(), 1);
        let s = &shapes[0];
        // The init container (3 CPU) is larger than the sum (1.6 CPU).
        assert_eq!(
            (s.cpu_millis, s.memory_bytes),
            (3000, (4 << 30) + (128 << 20))
        );
        assert!(s.one_per_node && s.replicas == 3);
        let sidecar = json!({"initContainers": [{"name": "s", "restartPolicy": "Always", "resources": {"requests": {"cpu": "1"}}},
                                               {"name": "i", "resources": {"requests": {"cpu": "500m"}}}],
                             "containers": [{"name": "c", "resources": {"requests": {"cpu": "250m"}}}]});
        assert_eq!(pod_requests(&sidecar).0, 1500);
    }

    #[test]
    fn first_fit_with_anti_affinity_taints_and_replaced_pods() {
        let shapes = pods_of_manifest("data", "tp", DB);
        let mut nodes = vec![node("a", 4000, 8), node("b", 4000, 8)];
        // Two nodes for three pods that must be on different nodes.
        let fit = compute_fit(&shapes, &nodes, &[]);
        assert_eq!(fit.unplaced.len(), 1, "{fit:?}");
        assert!(fit.unplaced[0].contains("one per node"), "{fit:?}");
        // A third node, tainted: still not.
        let mut c = node("c", 4000, 8);
        c.taints.push(Taint {
            key: "dedicated".into(),
            value: "kafka".into(),
            effect: "NoSchedule".into(),
        });
        nodes.push(c);
        assert_eq!(compute_fit(&shapes, &nodes, &[]).unplaced.len(), 1);
        // Tolerated: fits.
        let mut tolerant = shapes.clone();
        tolerant[0].tolerations = vec![
            json!({"key": "dedicated", "operator": "Equal", "value": "kafka", "effect": "NoSchedule"}),
        ];
        let fit = compute_fit(&tolerant, &nodes, &[]);
        assert!(fit.unplaced.is_empty(), "{fit:?}");
        // A pod of another workload takes c's room; the db's own running
        // pods are replaced and do not count.
        let pods = [
            PodState {
                namespace: "other".into(),
                name: "x".into(),
                node: "c".into(),
                owner: "ReplicaSet/x-1234".into(),
                cpu_millis: 2000,
                memory_bytes: 1 << 30,
            },
            PodState {
                namespace: "tp".into(),
                name: "db-0".into(),
                node: "a".into(),
                owner: "StatefulSet/db".into(),
                cpu_millis: 3000,
                memory_bytes: 4 << 30,
            },
        ];
        let fit = compute_fit(&tolerant, &nodes, &pods);
        assert_eq!(fit.cpu_millis.staying, 2000);
        assert_eq!(fit.unplaced.len(), 1, "{fit:?}");
        assert_eq!(fit.cpu_millis.shortfall, 3000);
        assert!(
            fit.unplaced[0].starts_with("tp/statefulset/db #"),
            "{fit:?}"
        );
    }

    fn claim(pvc: &str, sts: &str, ordinal: u32, class: &str, gi: u64) -> ClaimGrowth {
        ClaimGrowth {
            namespace: "tp".into(),
            statefulset: sts.into(),
            ordinal,
            pvc: pvc.into(),
            storage_class: class.into(),
            size: gi << 30,
            growth: gi << 30,
            new: true,
        }
    }

    #[test]
    fn pools_local_on_the_pods_node_replicated_on_distinct_nodes() {
        // Kloudspot's layout: a cStor pool (shared, 3 replicas) and an LVM
        // volume group (unshared) on each of three nodes.
        let free = |gi: [u64; 3]| {
            BTreeMap::from([
                ("n1".to_string(), gi[0] << 30),
                ("n2".to_string(), gi[1] << 30),
                ("n3".to_string(), gi[2] << 30),
            ])
        };
        let shared = StoragePool {
            storage_class: "cstor".into(),
            replicated: true,
            replicas: 3,
            free: free([20, 20, 20]),
        };
        let claims = [
            claim("state-flink-0", "flink", 0, "cstor", 10),
            claim("es-flink-0", "flink", 0, "cstor", 10),
        ];
        let fit = pool_fit(&shared, &claims, &[]);
        assert!(fit.unplaced.is_empty(), "{fit:?}");
        assert!(
            fit.per_node.iter().all(|n| n.needed_bytes == 20 << 30),
            "each node holds a replica of each: {fit:?}"
        );
        let more = [
            claims[0].clone(),
            claims[1].clone(),
            claim("db-x-0", "x", 0, "cstor", 1),
        ];
        let fit = pool_fit(&shared, &more, &[]);
        assert_eq!(
            fit.unplaced,
            ["tp/db-x-0 (1Gi × 3): fewer than 3 node(s) with room"]
        );

        let local = StoragePool {
            storage_class: "lvm".into(),
            replicated: false,
            replicas: 1,
            free: free([5, 50, 50]),
        };
        let claims = [claim("data-mongo-0", "mongo", 0, "lvm", 10)];
        // Its pod lands on n1, which has 5Gi: it does not fit there, though
        // other nodes have room.
        let placements = [(
            "tp".to_string(),
            "statefulset/mongo".to_string(),
            0,
            "n1".to_string(),
        )];
        let fit = pool_fit(&local, &claims, &placements);
        assert_eq!(
            fit.unplaced,
            ["tp/data-mongo-0 (10Gi): its pod's node n1 has not enough room"]
        );
        // Placement unknown (no cluster): the node with the most room.
        let fit = pool_fit(&local, &claims, &[]);
        assert!(fit.unplaced.is_empty());
        assert_eq!(
            fit.per_node.iter().map(|n| n.needed_bytes).sum::<u64>(),
            10 << 30
        );
    }

    #[test]
    fn units() {
        assert_eq!(cpu_millis("0.5"), Some(500));
        assert_eq!(cpu_millis("250m"), Some(250));
        assert_eq!(bytes_text(15 << 30), "15Gi");
        assert_eq!(bytes_text(1536 << 20), "1.5Gi");
        assert_eq!(cpu_text(2500), "2500m");
    }
}
