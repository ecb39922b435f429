//! Stand-ins for the two parts of a cluster the test control plane lacks:
//! the node (kubelet) and the storage driver (provisioner, external-resizer
//! and the kubelet's filesystem resize). Each is a background task a test
//! starts when it needs it; dropping the handle stops it.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Node, PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use plimsoll_planner::state::quantity_bytes;
use serde_json::json;

/// What the node stand-in does with pods.
#[derive(Clone, Debug, Default)]
pub struct NodeBehaviour {
    /// Delay between seeing a pod and reporting it Running and Ready.
    pub ready_after: Duration,
    /// Pods (by name) that run but never become ready.
    pub keep_unready: HashSet<String>,
    /// Pods (by name) reported as Failed.
    pub fail: HashSet<String>,
    /// Pods (by name) whose containers crash on start: Running, not ready,
    /// each container waiting in CrashLoopBackOff, as a kubelet reports a
    /// container that keeps exiting.
    pub crash_loop: HashSet<String>,
}

/// A node that binds every pod to itself and reports it Running and Ready.
pub struct NodeActor {
    pub name: String,
    pub behaviour: Arc<Mutex<NodeBehaviour>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for NodeActor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl NodeActor {
    pub async fn start(
        client: kube::Client,
        name: &str,
        behaviour: NodeBehaviour,
    ) -> Result<NodeActor, kube::Error> {
        let nodes: Api<Node> = Api::all(client.clone());
        let node: Node = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        }))
        .expect("node object");
        nodes.create(&PostParams::default(), &node).await?;
        let status = json!({"status": {
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "stand-in node",
                            "lastHeartbeatTime": now(), "lastTransitionTime": now()}],
            "capacity": {"cpu": "64", "memory": "256Gi", "pods": "500"},
            "allocatable": {"cpu": "64", "memory": "256Gi", "pods": "500"},
        }});
        nodes
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await?;
        let behaviour = Arc::new(Mutex::new(behaviour));
        let b = behaviour.clone();
        let node_name = name.to_string();
        let task = tokio::spawn(node_loop(client, node_name, b));
        Ok(NodeActor {
            name: name.to_string(),
            behaviour,
            task,
        })
    }
}

fn now() -> String {
    // RFC 3339 in UTC without external crates.
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = secs / 86_400;
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}Z")
}

/// The node's loop, as a kubelet watches its pods: one list, then a
/// watch from its resourceVersion (listed again when the watch ends); a
/// tick every 150 ms acts on what time or the behaviour changed (a pod
/// due to become ready). Listing every pod of the cluster every tick made
/// the stand-in, and the API server serving it, the bottleneck of syncs
/// with many releases.
async fn node_loop(client: kube::Client, node: String, behaviour: Arc<Mutex<NodeBehaviour>>) {
    use futures::StreamExt;
    use kube::api::WatchParams;
    use kube::core::WatchEvent;
    let all: Api<Pod> = Api::all(client.clone());
    let mut first_seen: BTreeMap<String, std::time::Instant> = BTreeMap::new();
    let key = |p: &Pod| {
        (
            p.metadata.namespace.clone().unwrap_or_default(),
            p.metadata.name.clone().unwrap_or_default(),
        )
    };
    loop {
        let list = match all.list(&ListParams::default()).await {
            Ok(l) => l,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(150)).await;
                continue;
            }
        };
        let mut version = list.metadata.resource_version.clone().unwrap_or_default();
        let mut pods: BTreeMap<(String, String), Pod> =
            list.items.into_iter().map(|p| (key(&p), p)).collect();
        for pod in pods.values() {
            let _ = handle_pod(&client, &node, &behaviour, &mut first_seen, pod).await;
        }
        let wp = WatchParams::default().timeout(60);
        let Ok(stream) = all.watch(&wp, &version).await else {
            tokio::time::sleep(Duration::from_millis(150)).await;
            continue;
        };
        let mut stream = std::pin::pin!(stream);
        let mut tick = tokio::time::interval(Duration::from_millis(150));
        loop {
            tokio::select! {
                event = stream.next() => match event {
                    Some(Ok(WatchEvent::Added(p) | WatchEvent::Modified(p))) => {
                        version = p.metadata.resource_version.clone().unwrap_or(version);
                        let _ = handle_pod(&client, &node, &behaviour, &mut first_seen, &p).await;
                        pods.insert(key(&p), p);
                    }
                    Some(Ok(WatchEvent::Deleted(p))) => {
                        pods.remove(&key(&p));
                    }
                    Some(Ok(WatchEvent::Bookmark(b))) => version = b.metadata.resource_version,
                    // Expired, failed or ended: list again.
                    Some(Ok(WatchEvent::Error(_)) | Err(_)) | None => break,
                },
                _ = tick.tick() => {
                    for pod in pods.values() {
                        let _ = handle_pod(&client, &node, &behaviour, &mut first_seen, pod).await;
                    }
                }
            }
        }
    }
}

/// What a kubelet does for one pod: confirm its deletion, bind it when
/// unscheduled, report it Running and Ready (or not) by the behaviour.
async fn handle_pod(
    client: &kube::Client,
    node: &str,
    behaviour: &Arc<Mutex<NodeBehaviour>>,
    first_seen: &mut BTreeMap<String, std::time::Instant>,
    pod: &Pod,
) -> Result<(), kube::Error> {
    {
        let (Some(name), Some(ns)) = (pod.metadata.name.clone(), pod.metadata.namespace.clone())
        else {
            return Ok(());
        };
        if pod.metadata.deletion_timestamp.is_some() {
            // A kubelet confirms deletion once containers stopped.
            let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
            let _ = pods
                .delete(&name, &kube::api::DeleteParams::default().grace_period(0))
                .await;
            return Ok(());
        }
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let bound_here = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node);
        if !bound_here {
            if pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .is_some()
            {
                return Ok(());
            }
            let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                                 "target": {"apiVersion": "v1", "kind": "Node", "name": node}});
            let _ = pods
                .create_subresource::<serde_json::Value, serde_json::Value>(
                    "binding",
                    &name,
                    &PostParams::default(),
                    &binding,
                )
                .await;
            return Ok(());
        }
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let seen = *first_seen
            .entry(uid)
            .or_insert_with(std::time::Instant::now);
        let b = behaviour.lock().expect("behaviour").clone();
        let phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        let ready = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        let containers: Vec<String> = pod
            .spec
            .as_ref()
            .map(|s| s.containers.iter().map(|c| c.name.clone()).collect())
            .unwrap_or_default();
        let status = if b.fail.contains(&name) {
            if phase == "Failed" {
                return Ok(());
            }
            json!({"status": {"phase": "Failed", "reason": "StandInFailure", "message": "failed by the node stand-in"}})
        } else if b.crash_loop.contains(&name) {
            let looping = pod
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .is_some_and(|cs| {
                    !cs.is_empty()
                        && cs.iter().all(|c| {
                            c.state
                                .as_ref()
                                .and_then(|s| s.waiting.as_ref())
                                .and_then(|w| w.reason.as_deref())
                                == Some("CrashLoopBackOff")
                        })
                });
            if phase == "Running" && looping {
                return Ok(());
            }
            let statuses: Vec<serde_json::Value> = containers
                .iter()
                .map(|c| json!({"name": c, "ready": false, "restartCount": 3, "image": "stand-in", "imageID": "",
                                "started": false,
                                "state": {"waiting": {"reason": "CrashLoopBackOff",
                                                      "message": "back-off restarting failed container (stand-in)"}},
                                "lastState": {"terminated": {"exitCode": 1, "reason": "Error",
                                                             "startedAt": now(), "finishedAt": now()}}}))
                .collect();
            running_pod_status(false, statuses)
        } else {
            let want_ready = !b.keep_unready.contains(&name) && seen.elapsed() >= b.ready_after;
            if phase == "Running" && ready == want_ready {
                return Ok(());
            }
            let statuses: Vec<serde_json::Value> = containers
                .iter()
                .map(|c| json!({"name": c, "ready": want_ready, "restartCount": 0, "image": "stand-in", "imageID": "",
                                "started": true, "state": {"running": {"startedAt": now()}}}))
                .collect();
            running_pod_status(want_ready, statuses)
        };
        let _ = pods
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
            .await;
    }
    Ok(())
}

/// A Running pod's status as a kubelet reports it: scheduled,
/// initialized, ready or not, with its containers' statuses.
fn running_pod_status(ready: bool, containers: Vec<serde_json::Value>) -> serde_json::Value {
    let flag = if ready { "True" } else { "False" };
    json!({"status": {
        "phase": "Running", "hostIP": "127.0.0.1", "podIP": "127.0.0.2", "startTime": now(),
        "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now()},
            {"type": "Initialized", "status": "True", "lastTransitionTime": now()},
            {"type": "ContainersReady", "status": flag, "lastTransitionTime": now()},
            {"type": "Ready", "status": flag, "lastTransitionTime": now()},
        ],
        "containerStatuses": containers,
    }})
}

/// What the storage-driver stand-in does with resize requests.
#[derive(Clone, Debug, Default)]
pub struct StorageBehaviour {
    /// PVCs (by name) whose resize fails.
    pub fail_resize: HashSet<String>,
    /// PVCs (by name) whose resize never completes.
    pub stall_resize: HashSet<String>,
}

/// Provisions PersistentVolumes for claims of one StorageClass and performs
/// volume expansion, recording the events the real external-resizer and
/// kubelet record.
pub struct StorageActor {
    pub storage_class: String,
    pub behaviour: Arc<Mutex<StorageBehaviour>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StorageActor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Creates a StorageClass served by the storage stand-in.
pub async fn create_storage_class(
    client: &kube::Client,
    name: &str,
    expandable: bool,
) -> Result<(), kube::Error> {
    let sc: k8s_openapi::api::storage::v1::StorageClass = serde_json::from_value(json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": name}, "provisioner": "plimsoll.test/stand-in",
        "allowVolumeExpansion": expandable, "volumeBindingMode": "Immediate",
    }))
    .expect("storage class object");
    Api::<k8s_openapi::api::storage::v1::StorageClass>::all(client.clone())
        .create(&PostParams::default(), &sc)
        .await?;
    Ok(())
}

impl StorageActor {
    pub async fn start(
        client: kube::Client,
        storage_class: &str,
        behaviour: StorageBehaviour,
    ) -> StorageActor {
        let behaviour = Arc::new(Mutex::new(behaviour));
        let b = behaviour.clone();
        let sc = storage_class.to_string();
        let task = tokio::spawn(async move {
            // v1.32 tracks a resize in `status.allocatedResourceStatuses`
            // (RecoverVolumeExpansionFailure, beta and on since 1.32), as
            // the external resizer and the kubelet report it.
            let resize_status = client
                .apiserver_version()
                .await
                .ok()
                .and_then(|v| v.minor.trim_end_matches('+').parse::<u32>().ok())
                .is_some_and(|minor| minor >= 32);
            loop {
                let _ = storage_step(&client, &sc, &b, resize_status).await;
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
        });
        StorageActor {
            storage_class: storage_class.to_string(),
            behaviour,
            task,
        }
    }
}

async fn record_event(
    client: &kube::Client,
    pvc: &PersistentVolumeClaim,
    type_: &str,
    reason: &str,
    message: &str,
) {
    let ns = pvc.metadata.namespace.clone().unwrap_or_default();
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let name = format!(
        "{}.{}{}",
        pvc.metadata.name.clone().unwrap_or_default(),
        reason.to_lowercase(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    let ev: Event = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": name, "namespace": ns},
        "involvedObject": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": ns,
                           "name": pvc.metadata.name, "uid": pvc.metadata.uid},
        "type": type_, "reason": reason, "message": message,
        "source": {"component": if reason.starts_with("FileSystem") { "kubelet" } else { "external-resizer plimsoll.test/stand-in" }},
        "firstTimestamp": now(), "lastTimestamp": now(), "count": 1,
    }))
    .expect("event");
    let _ = events.create(&PostParams::default(), &ev).await;
}

async fn storage_step(
    client: &kube::Client,
    sc: &str,
    behaviour: &Arc<Mutex<StorageBehaviour>>,
    resize_status: bool,
) -> Result<(), kube::Error> {
    let pvcs: Api<PersistentVolumeClaim> = Api::all(client.clone());
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    for pvc in pvcs.list(&ListParams::default()).await? {
        let spec = pvc.spec.clone().unwrap_or_default();
        if spec.storage_class_name.as_deref() != Some(sc) {
            continue;
        }
        let (name, ns) = (
            pvc.metadata.name.clone().unwrap_or_default(),
            pvc.metadata.namespace.clone().unwrap_or_default(),
        );
        let requested = spec
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage"))
            .map(|q| q.0.clone())
            .unwrap_or_default();
        match spec.volume_name.as_deref().filter(|v| !v.is_empty()) {
            None => {
                // Provision: a PV pre-bound to the claim; the PV controller
                // of kube-controller-manager completes the binding.
                let pv_name = format!("pv-{ns}-{name}");
                if pvs.get_opt(&pv_name).await?.is_some() {
                    continue;
                }
                let pv: PersistentVolume = serde_json::from_value(json!({
                    "apiVersion": "v1", "kind": "PersistentVolume",
                    "metadata": {"name": pv_name, "annotations": {"pv.kubernetes.io/provisioned-by": "plimsoll.test/stand-in"}},
                    "spec": {
                        "capacity": {"storage": requested},
                        "accessModes": spec.access_modes.clone().unwrap_or_else(|| vec!["ReadWriteOnce".into()]),
                        "persistentVolumeReclaimPolicy": "Retain",
                        "storageClassName": sc,
                        "hostPath": {"path": format!("/tmp/plimsoll-stand-in/{ns}/{name}")},
                        "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": ns, "name": name,
                                     "uid": pvc.metadata.uid},
                    },
                }))
                .expect("pv");
                let _ = pvs.create(&PostParams::default(), &pv).await;
            }
            Some(pv_name) => {
                let capacity = pvc
                    .status
                    .as_ref()
                    .and_then(|s| s.capacity.as_ref())
                    .and_then(|c| c.get("storage"))
                    .map(|q| q.0.clone())
                    .unwrap_or_default();
                let phase = pvc
                    .status
                    .as_ref()
                    .and_then(|s| s.phase.clone())
                    .unwrap_or_default();
                if phase != "Bound" || capacity.is_empty() {
                    continue;
                }
                if quantity_bytes(&requested) <= quantity_bytes(&capacity) {
                    continue;
                }
                let b = behaviour.lock().expect("behaviour").clone();
                if b.stall_resize.contains(&name) {
                    continue;
                }
                if b.fail_resize.contains(&name) {
                    let failed = pvc
                        .status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|c| {
                            c.iter()
                                .any(|c| c.reason.as_deref() == Some("VolumeResizeFailed"))
                        });
                    if !failed {
                        record_event(
                            client,
                            &pvc,
                            "Warning",
                            "VolumeResizeFailed",
                            "resize failed by the storage stand-in",
                        )
                        .await;
                        let mut status = json!({"status": {"conditions": [{"type": "Resizing", "status": "False",
                            "reason": "VolumeResizeFailed", "message": "resize failed by the storage stand-in", "lastTransitionTime": now()}]}});
                        if resize_status {
                            status["status"]["allocatedResourceStatuses"] =
                                json!({"storage": "ControllerResizeInfeasible"});
                        }
                        let pvcs_ns: Api<PersistentVolumeClaim> =
                            Api::namespaced(client.clone(), &ns);
                        let _ = pvcs_ns
                            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                            .await;
                    }
                    continue;
                }
                let pvcs_ns: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
                if resize_status {
                    resize_in_phases(client, &pvc, pv_name, &requested).await?;
                    continue;
                }
                record_event(
                    client,
                    &pvc,
                    "Normal",
                    "Resizing",
                    &format!("External resizer is resizing volume {pv_name}"),
                )
                .await;
                let grow = json!({"spec": {"capacity": {"storage": requested}}});
                pvs.patch(pv_name, &PatchParams::default(), &Patch::Merge(&grow))
                    .await?;
                record_event(
                    client,
                    &pvc,
                    "Normal",
                    "FileSystemResizeRequired",
                    "Require file system resize of volume on node",
                )
                .await;
                let status =
                    json!({"status": {"capacity": {"storage": requested}, "conditions": null}});
                pvcs_ns
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                    .await?;
                record_event(
                    client,
                    &pvc,
                    "Normal",
                    "FileSystemResizeSuccessful",
                    &format!("MountVolume.NodeExpandVolume succeeded for volume {pv_name}"),
                )
                .await;
            }
        }
    }
    Ok(())
}

/// A resize as v1.32's external resizer and kubelet report it, one phase
/// per pass: `ControllerResizeInProgress` (with `allocatedResources`), the
/// volume grown and `NodeResizePending`, then the capacity and no status.
async fn resize_in_phases(
    client: &kube::Client,
    pvc: &PersistentVolumeClaim,
    pv_name: &str,
    requested: &str,
) -> Result<(), kube::Error> {
    let (name, ns) = (
        pvc.metadata.name.clone().unwrap_or_default(),
        pvc.metadata.namespace.clone().unwrap_or_default(),
    );
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let state = pvc
        .status
        .as_ref()
        .and_then(|s| s.allocated_resource_statuses.as_ref())
        .and_then(|s| s.get("storage"))
        .cloned()
        .unwrap_or_default();
    let status = match state.as_str() {
        "" => {
            record_event(
                client,
                pvc,
                "Normal",
                "Resizing",
                &format!("External resizer is resizing volume {pv_name}"),
            )
            .await;
            json!({"status": {"allocatedResources": {"storage": requested},
                              "allocatedResourceStatuses": {"storage": "ControllerResizeInProgress"}}})
        }
        "ControllerResizeInProgress" => {
            let grow = json!({"spec": {"capacity": {"storage": requested}}});
            pvs.patch(pv_name, &PatchParams::default(), &Patch::Merge(&grow))
                .await?;
            record_event(
                client,
                pvc,
                "Normal",
                "FileSystemResizeRequired",
                "Require file system resize of volume on node",
            )
            .await;
            json!({"status": {"allocatedResourceStatuses": {"storage": "NodeResizePending"},
                              "conditions": [{"type": "FileSystemResizePending", "status": "True",
                                              "lastTransitionTime": now()}]}})
        }
        "NodeResizePending" | "NodeResizeInProgress" => {
            record_event(
                client,
                pvc,
                "Normal",
                "FileSystemResizeSuccessful",
                &format!("MountVolume.NodeExpandVolume succeeded for volume {pv_name}"),
            )
            .await;
            json!({"status": {"capacity": {"storage": requested},
                              "allocatedResourceStatuses": null, "conditions": null}})
        }
        _ => return Ok(()),
    };
    pvcs.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    Ok(())
}
