//! Pre-flight capacity on the real control plane: the bundled example (with
//! the test charts, which render the profiles' requests) installed at m on
//! a node of 1 CPU and 6 GiB (the node stand-in's allocatable), then: m→l
//! fits (beside a pod of another workload that stays, and a second node
//! whose taint the database does not tolerate); m→xl does not (the plan
//! names the shortfall and the pods, a
//! warning, a refusal with --strict, and `sync --strict` changes nothing);
//! a StorageClass publishing too little capacity (CSIStorageCapacity, v1 on
//! 1.32, v1alpha1 behind its feature gate on 1.20) is refused with
//! --strict; a snapshot gives the same capacity section offline;
//! `estimate` output as golden files.

use std::process::Output;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use plimsoll_testenv::actors::{create_storage_class, StorageActor, StorageBehaviour};
use plimsoll_testenv::{on_both_versions, Cluster, Env};
use serde_json::json;

mod support;
use support::text;

const NS: &str = "thingpark";
const CLASSES: [&str; 2] = ["thingpark-csi-gp3-xfs", "thingpark-csi-gp3-ext4"];

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The plan's capacity section (from `Capacity:` on).
fn capacity_section(plan: &str) -> String {
    plan.find("\nCapacity:\n")
        .map(|i| plan[i..].to_string())
        .unwrap_or_default()
}

on_both_versions! {
async fn the_new_sizing_is_checked_against_nodes_and_published_storage_before_any_change() {
    let Some(env) = Env::require() else {
        return;
    };
    let cluster = Cluster::start(&env, NS).await.expect("cluster");
    let mut storage = Vec::new();
    for class in CLASSES {
        create_storage_class(&cluster.client, class, true).await.unwrap();
        storage.push(StorageActor::start(cluster.client.clone(), class, StorageBehaviour::default()).await);
    }
    let repo = support::example_repo(NS, false);
    let dir = repo.path();
    let run = |args: &[&str]| support::plimsoll_on(&cluster.cp, dir, args, &[]);
    let kubeconfig = cluster.cp.kubeconfig.display().to_string();
    let snapshot = || support::plimsoll(dir, &["snapshot", "-n", NS, "--kubeconfig", &kubeconfig]);
    let o = run(&["sync", "--yes", "--set", "segment=m"]);
    assert!(o.status.success(), "{}", text(&o));

    // A small node: 1 CPU, 6 GiB.
    let nodes: Api<Node> = Api::all(cluster.client.clone());
    nodes
        .patch_status(
            "stand-in",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"allocatable": {"cpu": "1", "memory": "6Gi", "pods": "110"}}})),
        )
        .await
        .unwrap();

    // A second node, smaller and tainted for Kafka (the mariadb pods do
    // not tolerate it), and a pod of another workload that stays, with
    // requests, on the stand-in node.
    let small: Node = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "small-2", "labels": {"kubernetes.io/hostname": "small-2"}},
        "spec": {"taints": [{"key": "dedicated", "value": "kafka", "effect": "NoSchedule"}]},
    }))
    .unwrap();
    nodes.create(&Default::default(), &small).await.unwrap();
    nodes
        .patch_status(
            "small-2",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"allocatable": {"cpu": "500m", "memory": "2Gi", "pods": "110"}}})),
        )
        .await
        .unwrap();
    let other = cluster.cp.namespace(&cluster.client, "other").await.unwrap();
    let busy: k8s_openapi::api::core::v1::Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "busy", "namespace": other},
        "spec": {"nodeName": "stand-in", "automountServiceAccountToken": false, "containers": [{"name": "main", "image": "registry.invalid/busy:1",
                 "resources": {"requests": {"cpu": "100m", "memory": "512Mi"}}}]},
    }))
    .unwrap();
    Api::<k8s_openapi::api::core::v1::Pod>::namespaced(cluster.client.clone(), &other)
        .create(&Default::default(), &busy)
        .await
        .unwrap();

    // m -> l fits.
    let o = run(&["plan", "--strict", "--set", "segment=l"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let l = capacity_section(&stdout(&o));
    assert!(
        l.contains("compute (an estimate, first fit on 2 node(s)): CPU 900m needed, 1400m free of 1500m; memory 4.3Gi needed, 7.5Gi free of 8Gi"),
        "{}",
        text(&o)
    );
    assert!(l.contains("storage class thingpark-csi-gp3-xfs: 0 new, 75Gi expansion; the class publishes no capacity (CSIStorageCapacity), not checked"), "{}", text(&o));
    assert!(!l.contains("does not fit"), "{}", text(&o));

    // m -> xl does not: the shortfall and the pods are named.
    let o = run(&["plan", "--set", "segment=xl"]);
    assert_eq!(o.status.code(), Some(2), "a warning without --strict: {}", text(&o));
    let out = stdout(&o);
    assert!(
        out.contains("warning: capacity: 2 pod(s) would not fit on the 2 node(s): short of 1200m CPU and 5.7Gi memory"),
        "{}",
        text(&o)
    );
    for ordinal in ["#1", "#2"] {
        assert!(
            out.contains(&format!("does not fit: thingpark/statefulset/mariadb-galera {ordinal} (cpu 600m, memory 2.9Gi): not enough CPU or memory left on any eligible node")),
            "{}",
            text(&o)
        );
    }
    let o = run(&["plan", "--strict", "--set", "segment=xl"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(stdout(&o).contains("REFUSED: 2 pod(s) would not fit"), "{}", text(&o));
    // Checked again by sync before its first step: nothing changes.
    let before = snapshot();
    let o = run(&["sync", "--yes", "--strict", "--set", "segment=xl"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let pvcs = |snapshot: &Output| {
        let v: serde_json::Value = serde_json::from_slice(&snapshot.stdout).unwrap();
        v["pvcs"].clone()
    };
    assert_eq!(pvcs(&snapshot()), pvcs(&before), "no PVC changed");

    // The snapshot carries what the check needs: the same section offline.
    let snap = dir.join("snapshot.json");
    std::fs::write(&snap, snapshot().stdout).unwrap();
    let online = run(&["plan", "--set", "segment=xl"]);
    let offline = support::plimsoll(
        dir,
        &["plan", "--set", "segment=xl", "--live", "snapshot.json", "--helm", &cluster.cp.helm.display().to_string()],
    );
    assert_eq!(capacity_section(&stdout(&offline)), capacity_section(&stdout(&online)), "{}", text(&offline));
    assert!(!capacity_section(&stdout(&online)).is_empty());

    // The xfs class publishes 50Gi in the stand-in node's segment and
    // 100Gi in another: 150Gi in all, but m -> l needs 75Gi more where its
    // pods are.
    let version = match cluster.cp.version {
        plimsoll_testenv::KubeVersion::V1_20 => "v1alpha1",
        plimsoll_testenv::KubeVersion::V1_32 => "v1",
    };
    let gvk = kube::api::GroupVersionKind::gvk("storage.k8s.io", version, "CSIStorageCapacity");
    let (resource, _) = kube::discovery::pinned_kind(&cluster.client, &gvk).await.unwrap();
    let capacities = Api::<kube::api::DynamicObject>::namespaced_with(cluster.client.clone(), NS, &resource);
    for (name, host, capacity) in [("xfs-stand-in", "stand-in", "50Gi"), ("xfs-elsewhere", "elsewhere", "100Gi")] {
        let published: kube::api::DynamicObject = serde_json::from_value(json!({
            "apiVersion": format!("storage.k8s.io/{version}"),
            "kind": "CSIStorageCapacity",
            "metadata": {"name": name, "namespace": NS},
            "storageClassName": CLASSES[0],
            "capacity": capacity,
            "maximumVolumeSize": "40Gi",
            "nodeTopology": {"matchLabels": {"kubernetes.io/hostname": host}},
        }))
        .unwrap();
        capacities.create(&Default::default(), &published).await.unwrap();
    }
    let o = run(&["plan", "--strict", "--set", "segment=l"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        stdout(&o).contains("REFUSED: StorageClass thingpark-csi-gp3-xfs in segment kubernetes.io/hostname=stand-in: 75Gi more is needed there, 50Gi is published"),
        "{}",
        text(&o)
    );
    let o = run(&["plan", "--set", "segment=l"]);
    assert!(
        stdout(&o).contains("storage class thingpark-csi-gp3-xfs: 0 new, 75Gi expansion; 150Gi published — does not fit\n    segment kubernetes.io/hostname=stand-in: 75Gi needed, 50Gi published"),
        "{}",
        text(&o)
    );

    // The ext4 class publishes nothing; declared as a local pool of 10Gi
    // on the node, the two lrc claims' growth (10Gi each) does not fit.
    let stack = std::fs::read_to_string(dir.join("plimsoll.yaml")).unwrap();
    std::fs::write(
        dir.join("plimsoll.yaml"),
        format!("{stack}storagePools:\n  - storageClass: {}\n    kind: local\n    free: {{stand-in: 15Gi}}\n", CLASSES[1]),
    )
    .unwrap();
    let o = run(&["plan", "--strict", "--set", "segment=l"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        stdout(&o).contains("REFUSED: storage pool thingpark-csi-gp3-ext4: 1 claim(s) find no room: thingpark/data-lrc-"),
        "{}",
        text(&o)
    );
    let o = run(&["plan", "--set", "segment=l"]);
    assert!(
        stdout(&o).contains("storage pool thingpark-csi-gp3-ext4 (local): stand-in 10Gi of 15Gi free"),
        "{}",
        text(&o)
    );
    std::fs::write(dir.join("plimsoll.yaml"), stack).unwrap();

    // What an operator runs before choosing a segment.
    let helm = cluster.cp.helm.display().to_string();
    let alone = support::plimsoll(dir, &["estimate", "--set", "segment=xl", "--helm", &helm]);
    assert!(alone.status.success(), "{}", text(&alone));
    support::golden("capacity", "estimate-xl.txt", &stdout(&alone));
    let beside = run(&["estimate", "--cluster", "--set", "segment=xl"]);
    assert!(beside.status.success(), "{}", text(&beside));
    support::golden("capacity", "estimate-xl-on-the-cluster.txt", &stdout(&beside));
    // From a snapshot: the same.
    std::fs::write(&snap, snapshot().stdout).unwrap();
    let offline = support::plimsoll(dir, &["estimate", "--set", "segment=xl", "--live", "snapshot.json", "--helm", &helm]);
    assert_eq!(stdout(&offline), stdout(&beside), "{}", text(&offline));
    let json = run(&["estimate", "--cluster", "--set", "segment=xl", "--format", "json"]);
    let e: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    assert_eq!(e["cluster"]["unplaced"].as_array().map(Vec::len), Some(2), "{e}");
    drop(storage);
}
}
