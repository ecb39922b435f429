//! Proof that the test environment is real: behaviours only a real
//! kube-apiserver, kube-controller-manager and Helm engine have.
//!
//! Each test starts its own control plane (nextest runs every test in its
//! own process) and works in its own namespace.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Event, PersistentVolumeClaim, Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use plimsoll_testenv::actors::{
    create_storage_class, NodeActor, NodeBehaviour, StorageActor, StorageBehaviour,
};
use plimsoll_testenv::{on_both_versions, ControlPlane, Env};
use serde_json::json;

async fn start() -> Option<(ControlPlane, kube::Client)> {
    let env = Env::require()?;
    let cp = ControlPlane::start(&env)
        .await
        .expect("control plane starts");
    let client = cp.client().await.expect("client");
    Some((cp, client))
}

async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn storage_class(client: &kube::Client, name: &str, expandable: bool) {
    create_storage_class(client, name, expandable)
        .await
        .expect("storage class");
}

fn pvc(name: &str, class: &str, size: &str) -> PersistentVolumeClaim {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": class,
                 "resources": {"requests": {"storage": size}}},
    }))
    .unwrap()
}

fn storage_patch(size: &str) -> serde_json::Value {
    json!({"spec": {"resources": {"requests": {"storage": size}}}})
}

async fn bound(pvcs: &Api<PersistentVolumeClaim>, name: &str) -> bool {
    match pvcs.get_opt(name).await {
        Ok(Some(p)) => p.status.and_then(|s| s.phase).as_deref() == Some("Bound"),
        _ => false,
    }
}

on_both_versions! {
async fn pvc_shrink_is_rejected_and_growth_needs_an_expandable_class() {
    let Some((cp, client)) = start().await else {
        return;
    };
    let ns = cp.namespace(&client, "pvc-rules").await.unwrap();
    storage_class(&client, "plimsoll-test-expandable", true).await;
    storage_class(&client, "plimsoll-test-fixed", false).await;
    let _s1 = StorageActor::start(
        client.clone(),
        "plimsoll-test-expandable",
        StorageBehaviour::default(),
    )
    .await;
    let _s2 = StorageActor::start(
        client.clone(),
        "plimsoll-test-fixed",
        StorageBehaviour::default(),
    )
    .await;
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    pvcs.create(
        &PostParams::default(),
        &pvc("grow", "plimsoll-test-expandable", "1Gi"),
    )
    .await
    .unwrap();
    pvcs.create(
        &PostParams::default(),
        &pvc("fixed", "plimsoll-test-fixed", "1Gi"),
    )
    .await
    .unwrap();
    eventually("both claims bound", Duration::from_secs(60), || async {
        bound(&pvcs, "grow").await && bound(&pvcs, "fixed").await
    })
    .await;

    let pp = PatchParams::default();
    let err = pvcs
        .patch("grow", &pp, &Patch::Merge(&storage_patch("512Mi")))
        .await
        .expect_err("shrinking a bound PVC is rejected");
    // v1.20: never below the previous request; v1.32 (recovery from a
    // failed expansion, RecoverVolumeExpansionFailure): never below the
    // capacity.
    let why = match cp.version {
        plimsoll_testenv::KubeVersion::V1_20 => "can not be less than previous value",
        plimsoll_testenv::KubeVersion::V1_32 => "can not be less than status.capacity",
    };
    assert!(err.to_string().contains(why), "{err}");

    pvcs.patch("grow", &pp, &Patch::Merge(&storage_patch("2Gi")))
        .await
        .expect("growing is accepted when the class allows expansion");
    let err = pvcs
        .patch("fixed", &pp, &Patch::Merge(&storage_patch("2Gi")))
        .await
        .expect_err("growing is rejected when the class does not allow expansion");
    assert!(
        err.to_string()
            .contains("storageclass that provisions the pvc must support resize"),
        "{err}"
    );

    // The storage stand-in completes the resize and records the events the
    // external-resizer and kubelet record.
    eventually("capacity 2Gi", Duration::from_secs(30), || async {
        pvcs.get("grow")
            .await
            .ok()
            .and_then(|p| p.status)
            .and_then(|s| s.capacity)
            .and_then(|c| c.get("storage").map(|q| q.0.clone()))
            == Some("2Gi".to_string())
    })
    .await;
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let reasons: Vec<String> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some("grow"))
        .filter_map(|e| e.reason)
        .collect();
    for r in [
        "Resizing",
        "FileSystemResizeRequired",
        "FileSystemResizeSuccessful",
    ] {
        assert!(
            reasons.iter().any(|x| x == r),
            "event {r} recorded: {reasons:?}"
        );
    }
}
}

fn statefulset(name: &str, size: &str, replicas: i32) -> StatefulSet {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name},
        "spec": {
            "serviceName": name, "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"containers": [{"name": "main", "image": "registry.invalid/x:1",
                                                  "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "plimsoll-test-expandable",
                         "resources": {"requests": {"storage": size}}}}],
        },
    }))
    .unwrap()
}

on_both_versions! {
async fn statefulset_volume_claim_templates_are_immutable() {
    let Some((cp, client)) = start().await else {
        return;
    };
    let ns = cp.namespace(&client, "sts-vct").await.unwrap();
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    sts.create(&PostParams::default(), &statefulset("db", "1Gi", 0))
        .await
        .unwrap();
    // A merge patch carries no resourceVersion, so the controller updating
    // the status meanwhile cannot turn this into a conflict.
    let changed = serde_json::to_value(statefulset("db", "2Gi", 0)).unwrap();
    let patch = json!({"spec": {"volumeClaimTemplates": changed["spec"]["volumeClaimTemplates"]}});
    let err = sts
        .patch("db", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect_err("changing volumeClaimTemplates is rejected");
    assert!(
        err.to_string()
            .contains("updates to statefulset spec for fields other than"),
        "{err}"
    );
}
}

/// Sorted (name, uid) of every object the API lists.
/// Waits until there are `n` objects, each with an owner reference to `uid`.
async fn all_owned_by<K>(what: &str, api: &Api<K>, n: usize, uid: &str)
where
    K: kube::Resource + Clone + for<'de> k8s_openapi::serde::Deserialize<'de> + std::fmt::Debug,
{
    eventually(what, Duration::from_secs(60), || async {
        api.list(&ListParams::default()).await.is_ok_and(|list| {
            list.items.len() == n
                && list.items.iter().all(|o| {
                    o.meta()
                        .owner_references
                        .as_ref()
                        .is_some_and(|refs| refs.iter().any(|r| r.uid == uid))
                })
        })
    })
    .await;
}

async fn uids<K>(api: &Api<K>) -> Vec<(String, String)>
where
    K: kube::Resource + Clone + for<'de> k8s_openapi::serde::Deserialize<'de> + std::fmt::Debug,
{
    let mut v: Vec<(String, String)> = api
        .list(&ListParams::default())
        .await
        .expect("list")
        .into_iter()
        .map(|o| {
            (
                o.meta().name.clone().unwrap_or_default(),
                o.meta().uid.clone().unwrap_or_default(),
            )
        })
        .collect();
    v.sort();
    v
}

on_both_versions! {
async fn orphan_delete_keeps_pods_and_pvcs_and_a_new_statefulset_adopts_them() {
    let Some((cp, client)) = start().await else {
        return;
    };
    let ns = cp.namespace(&client, "orphan").await.unwrap();
    storage_class(&client, "plimsoll-test-expandable", true).await;
    let _storage = StorageActor::start(
        client.clone(),
        "plimsoll-test-expandable",
        StorageBehaviour::default(),
    )
    .await;
    let _node = NodeActor::start(client.clone(), "stand-in-node", NodeBehaviour::default())
        .await
        .unwrap();
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    sts.create(&PostParams::default(), &statefulset("db", "1Gi", 2))
        .await
        .unwrap();
    eventually("2 ready replicas", Duration::from_secs(90), || async {
        sts.get("db")
            .await
            .ok()
            .and_then(|s| s.status)
            .and_then(|s| s.ready_replicas)
            == Some(2)
    })
    .await;
    let pod_uids = uids(&pods).await;
    let pvc_uids = uids(&pvcs).await;
    assert_eq!(pod_uids.len(), 2);
    assert_eq!(
        pvc_uids.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        vec!["data-db-0", "data-db-1"],
        "PVCs are named TEMPLATE-STS-ORDINAL"
    );
    let old_uid = sts.get("db").await.unwrap().metadata.uid.unwrap();

    let orphan = DeleteParams {
        propagation_policy: Some(kube::api::PropagationPolicy::Orphan),
        ..DeleteParams::default()
    };
    sts.delete("db", &orphan).await.unwrap();
    eventually("statefulset gone", Duration::from_secs(30), || async {
        sts.get_opt("db").await.unwrap().is_none()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let still = uids(&pods).await;
    assert_eq!(still, pod_uids, "pods survive an orphan delete");
    let still = uids(&pvcs).await;
    assert_eq!(still, pvc_uids, "PVCs survive an orphan delete");

    sts.create(&PostParams::default(), &statefulset("db", "2Gi", 2))
        .await
        .unwrap();
    let new_uid = sts.get("db").await.unwrap().metadata.uid.unwrap();
    assert_ne!(new_uid, old_uid);
    all_owned_by("pods adopted by the new statefulset", &pods, 2, &new_uid).await;
    let after = uids(&pods).await;
    assert_eq!(after, pod_uids, "the same pods, adopted, not re-created");
}
}

on_both_versions! {
async fn helm_install_then_upgrade_writes_release_secrets() {
    let Some((cp, client)) = start().await else {
        return;
    };
    let ns = cp.namespace(&client, "helm").await.unwrap();
    let charts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/charts");
    for version in ["1.0.0", "1.1.0"] {
        let out = std::process::Command::new(&cp.helm)
            .args(["upgrade", "--install", "demo"])
            .arg(charts.join(format!("test-app-{version}")))
            .args(["--namespace", &ns, "--version", version])
            .output()
            .expect("run helm front end");
        assert!(
            out.status.success(),
            "helm upgrade --install {version}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    for name in ["sh.helm.release.v1.demo.v1", "sh.helm.release.v1.demo.v2"] {
        let s = secrets
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(s.type_.as_deref(), Some("helm.sh/release.v1"));
    }
    let out = std::process::Command::new(&cp.helm)
        .args(["history", "demo", "--namespace", &ns, "-o", "json"])
        .output()
        .unwrap();
    let history: serde_json::Value = serde_json::from_slice(&out.stdout).expect("history is JSON");
    assert_eq!(history.as_array().map(Vec::len), Some(2), "{history}");
    assert_eq!(history[1]["chart"], "test-app-1.1.0");
}
}

/// A StatefulSet of `replicas` with a claim retention policy (GA in 1.32).
fn retained_statefulset(
    name: &str,
    replicas: i32,
    when_deleted: &str,
    when_scaled: &str,
) -> StatefulSet {
    let mut s = statefulset(name, "1Gi", replicas);
    let mut v = serde_json::to_value(&s).unwrap();
    v["spec"]["persistentVolumeClaimRetentionPolicy"] =
        json!({"whenDeleted": when_deleted, "whenScaled": when_scaled});
    s = serde_json::from_value(v).unwrap();
    s
}

/// v1.32 only: the proofs of what the claim retention policy does, on which
/// Plimsoll's refusal of a scale-down and its orphan re-create rely.
async fn start_1_32() -> Option<(ControlPlane, kube::Client, String, StorageActor, NodeActor)> {
    let env = Env::require()?;
    let cp = ControlPlane::start_version(&env, plimsoll_testenv::KubeVersion::V1_32)
        .await
        .expect("control plane v1.32 starts");
    let client = cp.client().await.expect("client");
    let ns = cp.namespace(&client, "retention").await.unwrap();
    storage_class(&client, "plimsoll-test-expandable", true).await;
    let storage = StorageActor::start(
        client.clone(),
        "plimsoll-test-expandable",
        StorageBehaviour::default(),
    )
    .await;
    let node = NodeActor::start(client.clone(), "stand-in-node", NodeBehaviour::default())
        .await
        .unwrap();
    Some((cp, client, ns, storage, node))
}

async fn ready(sts: &Api<StatefulSet>, name: &str, n: i32) {
    eventually(
        &format!("{n} ready replicas"),
        Duration::from_secs(90),
        || async {
            sts.get(name)
                .await
                .ok()
                .and_then(|s| s.status)
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0)
                == n
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_32_an_orphan_delete_keeps_the_claims_of_a_when_deleted_delete_statefulset() {
    let Some((_cp, client, ns, _storage, _node)) = start_1_32().await else {
        return;
    };
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    sts.create(
        &PostParams::default(),
        &retained_statefulset("db", 2, "Delete", "Retain"),
    )
    .await
    .unwrap();
    ready(&sts, "db", 2).await;
    let uid = sts.get("db").await.unwrap().metadata.uid.unwrap();
    all_owned_by("the controller owns the claims", &pvcs, 2, &uid).await;
    let (pod_uids, pvc_uids) = (uids(&pods).await, uids(&pvcs).await);
    let orphan = DeleteParams {
        propagation_policy: Some(kube::api::PropagationPolicy::Orphan),
        ..DeleteParams::default()
    };
    sts.delete("db", &orphan).await.unwrap();
    eventually("statefulset gone", Duration::from_secs(30), || async {
        sts.get_opt("db").await.unwrap().is_none()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        uids(&pvcs).await,
        pvc_uids,
        "claims survive an orphan delete"
    );
    assert_eq!(uids(&pods).await, pod_uids, "pods survive an orphan delete");
    for p in pvcs.list(&ListParams::default()).await.unwrap() {
        assert!(
            p.metadata
                .owner_references
                .unwrap_or_default()
                .iter()
                .all(|o| o.uid != uid),
            "the deleted StatefulSet no longer owns {:?}",
            p.metadata.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_32_scaling_down_a_when_scaled_delete_statefulset_deletes_the_removed_claims() {
    let Some((_cp, client, ns, _storage, _node)) = start_1_32().await else {
        return;
    };
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    sts.create(
        &PostParams::default(),
        &retained_statefulset("db", 3, "Retain", "Delete"),
    )
    .await
    .unwrap();
    ready(&sts, "db", 3).await;
    let names = |l: Vec<(String, String)>| l.into_iter().map(|(n, _)| n).collect::<Vec<_>>();
    assert_eq!(
        names(uids(&pvcs).await),
        ["data-db-0", "data-db-1", "data-db-2"]
    );
    sts.patch(
        "db",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 1}})),
    )
    .await
    .unwrap();
    eventually(
        "the claims of ordinals 1 and 2 deleted",
        Duration::from_secs(90),
        || async {
            pvcs.list(&ListParams::default()).await.is_ok_and(|l| {
                l.items
                    .iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_none())
                    .map(|p| p.metadata.name.clone().unwrap_or_default())
                    .collect::<Vec<_>>()
                    == ["data-db-0"]
            })
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_32_the_storage_stand_in_reports_resize_status_as_a_current_resizer_does() {
    let Some((_cp, client, ns, _storage, _node)) = start_1_32().await else {
        return;
    };
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    pvcs.create(
        &PostParams::default(),
        &pvc("grow", "plimsoll-test-expandable", "1Gi"),
    )
    .await
    .unwrap();
    eventually("bound", Duration::from_secs(30), || bound(&pvcs, "grow")).await;
    pvcs.patch(
        "grow",
        &PatchParams::default(),
        &Patch::Merge(storage_patch("3Gi")),
    )
    .await
    .unwrap();
    let mut seen = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let st = pvcs.get("grow").await.unwrap().status.unwrap_or_default();
        if let Some(state) = st
            .allocated_resource_statuses
            .as_ref()
            .and_then(|s| s.get("storage"))
        {
            seen.insert(state.clone());
            let allocated = st
                .allocated_resources
                .as_ref()
                .and_then(|a| a.get("storage"));
            assert_eq!(allocated.map(|q| q.0.as_str()), Some("3Gi"));
        }
        let capacity = st.capacity.as_ref().and_then(|c| c.get("storage"));
        let settled = st
            .allocated_resource_statuses
            .as_ref()
            .is_none_or(|s| s.is_empty());
        if capacity.map(|q| q.0.as_str()) == Some("3Gi") && settled {
            break;
        }
        assert!(Instant::now() < deadline, "not grown to 3Gi: {st:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        seen.contains("ControllerResizeInProgress") && seen.contains("NodeResizePending"),
        "the API server kept the resize statuses: {seen:?}"
    );
}
