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
}

impl ClassGrowth {
    /// Whether the growth fits what is published (`None`: not published).
    pub fn fits(&self) -> Option<bool> {
        self.published_bytes
            .map(|p| self.new_bytes + self.expansion_bytes <= p && self.too_large.is_empty())
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
        for s in &self.storage {
            if s.fits() == Some(false) {
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
                None => format!(
                    "storage class {}: {growth}; the class publishes no capacity (CSIStorageCapacity), not checked",
                    s.storage_class
                ),
            });
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
    fit
}

/// Storage growth per class: claims of the desired StatefulSets that do
/// not exist yet, and growth of those that do.
pub fn storage_growth(desired: &[DesiredRelease], observed: &ObservedState) -> Vec<ClassGrowth> {
    let mut by_class: BTreeMap<String, ClassGrowth> = BTreeMap::new();
    for d in desired {
        for s in &d.statefulsets {
            for t in &s.claim_templates {
                let Some(size) = quantity_bytes(&t.size).map(|b| b.min(u64::MAX as u128) as u64)
                else {
                    continue;
                };
                for i in 0..s.replicas.min(10_000) {
                    let pvc = format!("{}-{}-{i}", t.name, s.name);
                    let existing = observed
                        .pvcs
                        .iter()
                        .find(|p| p.namespace == d.namespace && p.name == pvc);
                    let class = t
                        .storage_class
                        .clone()
                        .or_else(|| existing.and_then(|p| p.storage_class.clone()))
                        .unwrap_or_else(|| "(default)".to_string());
                    let g = by_class
                        .entry(class.clone())
                        .or_insert_with(|| ClassGrowth {
                            storage_class: class,
                            new_bytes: 0,
                            expansion_bytes: 0,
                            published_bytes: None,
                            maximum_volume_bytes: None,
                            too_large: Vec::new(),
                        });
                    match existing {
                        Some(p) => {
                            let now = quantity_bytes(&p.request).unwrap_or(0) as u64;
                            g.expansion_bytes += size.saturating_sub(now);
                        }
                        None => g.new_bytes += size,
                    }
                    if let Some(max) = g
                        .maximum_volume_bytes
                        .or_else(|| published(observed, &g.storage_class).and_then(|(_, m)| m))
                    {
                        if size > max {
                            g.too_large.push(format!(
                                "{}/{pvc} ({})",
                                d.namespace,
                                bytes_text(size)
                            ));
                        }
                    }
                }
            }
        }
    }
    let mut out: Vec<ClassGrowth> = by_class.into_values().collect();
    for g in &mut out {
        if let Some((total, max)) = published(observed, &g.storage_class) {
            g.published_bytes = Some(total);
            g.maximum_volume_bytes = max;
        }
    }
    out.retain(|g| g.new_bytes + g.expansion_bytes > 0);
    out
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
}

/// What the desired state needs; with `observed`, beside what is free.
pub fn estimate(desired: &[DesiredRelease], observed: Option<&ObservedState>) -> Estimate {
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
    Estimate {
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
        cluster: observed
            .and_then(|o| o.nodes.as_ref().map(|n| (o, n)))
            .map(|(o, nodes)| compute_fit(&shapes, nodes, &o.pods)),
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
        if let Some(c) = &self.cluster {
            out.push_str(&format!(
                "
On the cluster ({} node(s)): CPU {} needed, {} free of {}; memory {} needed, {} free of {}
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

/// The capacity section for a plan.
pub fn capacity(desired: &[DesiredRelease], observed: &ObservedState) -> Capacity {
    let shapes: Vec<PodShape> = desired
        .iter()
        .flat_map(|d| pods_of_manifest(&d.name, &d.namespace, &d.manifest))
        .collect();
    Capacity {
        compute: observed
            .nodes
            .as_ref()
            .map(|nodes| compute_fit(&shapes, nodes, &observed.pods)),
        storage: storage_growth(desired, observed),
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

    #[test]
    fn units() {
        assert_eq!(cpu_millis("0.5"), Some(500));
        assert_eq!(cpu_millis("250m"), Some(250));
        assert_eq!(bytes_text(15 << 30), "15Gi");
        assert_eq!(bytes_text(1536 << 20), "1.5Gi");
        assert_eq!(cpu_text(2500), "2500m");
    }
}
