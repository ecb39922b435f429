//! Operator-aware transitions on the real control plane: the custom
//! resources a chart renders are waited on by their health rules, with
//! operator stand-ins acting on real CRDs (`testenv/src/operators.rs`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use plimsoll_testenv::operators::{
    install_pravega_crd, pravega_api, PravegaBehaviour, PravegaOperator,
};
use plimsoll_testenv::{on_both_versions, Cluster, Env};

mod support;
use support::{copy_dir, text};

const NS: &str = "streaming";

struct Site {
    cluster: Cluster,
    operator: PravegaOperator,
    repo: tempfile::TempDir,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

impl Site {
    async fn start(behaviour: PravegaBehaviour) -> Option<Site> {
        let env = Env::require()?;
        let cluster = Cluster::start(&env, NS).await.expect("cluster");
        install_pravega_crd(&cluster.client).await.expect("CRD");
        let operator = PravegaOperator::start(cluster.client.clone(), NS, behaviour).await;
        let repo = tempfile::tempdir().unwrap();
        copy_dir(
            &root().join("fixtures/charts/test-pravega-1.0.0"),
            &repo.path().join("charts/test-pravega"),
        );
        copy_dir(
            &root().join("fixtures/charts/test-app-1.0.0"),
            &repo.path().join("charts/test-app"),
        );
        std::fs::write(
            repo.path().join("plimsoll.yaml"),
            format!(
                "name: streaming\nvariables:\n  pravega: {{values: ['0.9.0', '0.10.0'], default: '0.9.0'}}\n\
                 stages: [data, application]\nreleases:\n\
                 \x20 - name: pravega\n    chart: charts/test-pravega\n    version: 1.0.0\n    namespace: {NS}\n    stage: data\n    layers:\n      - pravega-${{pravega}}.yaml\n\
                 \x20 - name: app\n    chart: charts/test-app\n    version: 1.0.0\n    namespace: {NS}\n    stage: application\n    layers:\n      - app-${{pravega}}.yaml\n"
            ),
        )
        .unwrap();
        for v in ["0.9.0", "0.10.0"] {
            std::fs::write(
                repo.path().join(format!("pravega-{v}.yaml")),
                format!("version: {v}\n"),
            )
            .unwrap();
            // The application follows the platform: its values change too.
            std::fs::write(
                repo.path().join(format!("app-{v}.yaml")),
                format!("twa:\n  replicaCount: 1\n  streamVersion: {v}\nlrc:\n  replicaCount: 1\n"),
            )
            .unwrap();
        }
        Some(Site {
            cluster,
            operator,
            repo,
        })
    }

    fn sync(&self, version: &str, extra: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_plimsoll"))
            .current_dir(self.repo.path())
            .args(["sync", "--yes", "--set", &format!("pravega={version}")])
            .args(extra)
            .args([
                "--kubeconfig",
                &self.cluster.cp.kubeconfig.display().to_string(),
            ])
            .args(["--helm", &self.cluster.cp.helm.display().to_string()])
            .output()
            .unwrap()
    }

    async fn current_version(&self) -> String {
        pravega_api(&self.cluster.client, NS)
            .get("pravega")
            .await
            .unwrap()
            .data["status"]["currentVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    async fn app_revisions(&self) -> usize {
        let api: kube::Api<k8s_openapi::api::core::v1::Secret> =
            kube::Api::namespaced(self.cluster.client.clone(), NS);
        api.list(&kube::api::ListParams::default().labels("owner=helm,name=app"))
            .await
            .unwrap()
            .items
            .len()
    }
}

on_both_versions! {
/// The upgrade of a PravegaCluster completes only when the operator says
/// so (`currentVersion`, `Upgrading=False`), and the application stage
/// starts after it.
async fn a_pravega_upgrade_waits_for_the_operator_before_the_next_stage() {
    let Some(site) = Site::start(PravegaBehaviour::default()).await else {
        return;
    };
    let o = site.sync("0.9.0", &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(site.current_version().await, "0.9.0");
    assert_eq!(site.app_revisions().await, 1);

    let plan = Command::new(env!("CARGO_BIN_EXE_plimsoll"))
        .current_dir(site.repo.path())
        .args(["plan", "--set", "pravega=0.10.0"])
        .args(["--kubeconfig", &site.cluster.cp.kubeconfig.display().to_string()])
        .args(["--helm", &site.cluster.cp.helm.display().to_string()])
        .output()
        .unwrap();
    let plan_text = String::from_utf8_lossy(&plan.stdout);
    assert!(
        plan_text.contains("wait until ready: PravegaCluster/pravega"),
        "the plan waits on the custom resource: {}",
        text(&plan)
    );

    let started = Instant::now();
    let o = site.sync("0.10.0", &[]);
    assert!(o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("PravegaCluster/pravega: Upgrading: Updating Segmentstore"),
        "progress shows the condition now: {}",
        text(&o)
    );
    // Three segment stores, one at a time: the sync waited for them.
    assert!(started.elapsed() >= Duration::from_secs(2), "{:?}", started.elapsed());
    assert_eq!(site.current_version().await, "0.10.0", "the operator finished first");
    assert_eq!(site.app_revisions().await, 2, "then the application stage ran");
    drop(site.operator);
}
}

on_both_versions! {
/// A precondition (`requires:`): the application release starts only while
/// the PravegaCluster is current; a failed one stops the sync before the
/// release's first step, with the operator's reason.
async fn a_release_waits_for_its_preconditions() {
    let Some(site) = Site::start(PravegaBehaviour::default()).await else {
        return;
    };
    let stack = std::fs::read_to_string(site.repo.path().join("plimsoll.yaml")).unwrap();
    std::fs::write(
        site.repo.path().join("plimsoll.yaml"),
        stack.replace(
            "    stage: application\n",
            "    stage: application\n    requires:\n      - {apiVersion: pravega.pravega.io/v1beta1, kind: PravegaCluster, name: pravega}\n",
        ),
    )
    .unwrap();
    let o = site.sync("0.9.0", &[]);
    assert!(o.status.success(), "{}", text(&o));
    let api = pravega_api(&site.cluster.client, NS);
    api.patch_status(
        "pravega",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&serde_json::json!({"status": {"conditions": [
            {"type": "Error", "status": "True", "reason": "ClusterError", "message": "bookkeeper quorum lost"}]}})),
    )
    .await
    .unwrap();
    // Only the application's values change.
    std::fs::write(
        site.repo.path().join("app-0.9.0.yaml"),
        "twa:\n  replicaCount: 1\n  streamVersion: 0.9.0\n  extra: x\nlrc:\n  replicaCount: 1\n",
    )
    .unwrap();
    let before = site.app_revisions().await;
    let o = site.sync("0.9.0", &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(
        out.contains("PravegaCluster/pravega failed: ClusterError: bookkeeper quorum lost"),
        "{}",
        text(&o)
    );
    assert_eq!(site.app_revisions().await, before, "the release did not start");
}
}

on_both_versions! {
/// A release's own `readyTimeout` bounds its waits: an operator slower
/// than that stops the sync, saying what it was waiting for.
async fn a_release_wait_is_bounded_by_its_ready_timeout() {
    let behaviour = PravegaBehaviour {
        pod_delay: Duration::from_secs(30),
        ..PravegaBehaviour::default()
    };
    let Some(site) = Site::start(behaviour).await else {
        return;
    };
    let o = site.sync("0.9.0", &[]);
    assert!(o.status.success(), "{}", text(&o));
    let stack = std::fs::read_to_string(site.repo.path().join("plimsoll.yaml")).unwrap();
    std::fs::write(
        site.repo.path().join("plimsoll.yaml"),
        stack.replace("    stage: data\n", "    stage: data\n    readyTimeout: 2s\n"),
    )
    .unwrap();
    let o = site.sync("0.10.0", &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(
            "not ready within 2s: PravegaCluster/pravega: Upgrading: Updating Segmentstore (0)"
        ),
        "{}",
        text(&o)
    );
    assert_eq!(site.app_revisions().await, 1, "the next stage did not start");
}
}

on_both_versions! {
/// A PravegaCluster's `spec.version` is a version: going back is refused
/// before any change (the chart's own version did not move).
async fn a_pravega_downgrade_is_refused_before_any_change() {
    let Some(site) = Site::start(PravegaBehaviour::default()).await else {
        return;
    };
    let o = site.sync("0.10.0", &[]);
    assert!(o.status.success(), "{}", text(&o));
    let revisions = site.app_revisions().await;
    let o = site.sync("0.9.0", &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(
            "REFUSED: pravega: PravegaCluster/pravega would be downgraded from 0.10.0 to 0.9.0"
        ),
        "{}",
        text(&o)
    );
    let cr = pravega_api(&site.cluster.client, NS).get("pravega").await.unwrap();
    assert_eq!(cr.data["spec"]["version"], "0.10.0", "the resource is untouched");
    assert_eq!(site.app_revisions().await, revisions, "nothing ran");
}
}

on_both_versions! {
/// A failing operator upgrade stops the sync with the operator's own
/// reason; the application stage is untouched; once the operator
/// recovers, the next sync waits for it and finishes.
async fn a_failing_operator_upgrade_stops_the_sync_with_its_reason() {
    let behaviour = PravegaBehaviour {
        fail_upgrade_to: Some("0.10.0".into()),
        ..PravegaBehaviour::default()
    };
    let Some(site) = Site::start(behaviour).await else {
        return;
    };
    let o = site.sync("0.9.0", &[]);
    assert!(o.status.success(), "{}", text(&o));
    let o = site.sync("0.10.0", &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("PravegaCluster/pravega failed: UpgradeFailed: failed to sync segmentstore version. pod pravega-pravega-segmentstore-0 is restarting"),
        "{}",
        text(&o)
    );
    assert_eq!(site.app_revisions().await, 1, "the application stage is untouched");

    // The operator recovers (the failure is fixed): the next sync sees the
    // cluster not current, waits for it, then runs the application stage.
    site.operator.behaviour.lock().unwrap().fail_upgrade_to = None;
    let api = pravega_api(&site.cluster.client, NS);
    api.patch_status(
        "pravega",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&serde_json::json!({"status": {"conditions": [
            {"type": "Error", "status": "False"}, {"type": "Upgrading", "status": "False"},
            {"type": "PodsReady", "status": "False"}]}})),
    )
    .await
    .unwrap();
    let o = site.sync("0.10.0", &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(site.current_version().await, "0.10.0");
    assert_eq!(site.app_revisions().await, 2);
}
}

/// A stack with one release whose chart renders a PerconaServerMongoDB; its
/// operator stand-in keeps the `mongod-data-*` claims.
struct PerconaSite {
    cluster: Cluster,
    operator: plimsoll_testenv::operators::PerconaOperator,
    repo: tempfile::TempDir,
}

impl PerconaSite {
    async fn start() -> Option<PerconaSite> {
        use plimsoll_testenv::operators::{install_percona_crd, PerconaBehaviour, PerconaOperator};
        let env = Env::require()?;
        let cluster = Cluster::start(&env, NS).await.expect("cluster");
        install_percona_crd(&cluster.client).await.expect("CRD");
        let operator =
            PerconaOperator::start(cluster.client.clone(), NS, PerconaBehaviour::default()).await;
        let repo = tempfile::tempdir().unwrap();
        copy_dir(
            &root().join("fixtures/charts/test-percona-1.0.0"),
            &repo.path().join("charts/test-percona"),
        );
        std::fs::write(
            repo.path().join("plimsoll.yaml"),
            format!(
                "name: mongo\nvariables:\n  size: {{values: [25Gi, 45Gi, 60Gi, 20Gi], default: 25Gi}}\n\
                 stages: [data]\nreleases:\n\
                 \x20 - name: mongo\n    chart: charts/test-percona\n    version: 1.0.0\n    namespace: {NS}\n    stage: data\n    layers:\n      - size-${{size}}.yaml\n\
                 \x20   patches:\n      - apiVersion: psmdb.percona.com/v1\n        kind: PerconaServerMongoDB\n        name: mongo\n        patch:\n          - {{op: add, path: /spec/enableVolumeExpansion, value: true}}\n"
            ),
        )
        .unwrap();
        for size in ["25Gi", "45Gi", "60Gi", "20Gi"] {
            std::fs::write(
                repo.path().join(format!("size-{size}.yaml")),
                format!("mongo:\n  size: {size}\n"),
            )
            .unwrap();
        }
        Some(PerconaSite {
            cluster,
            operator,
            repo,
        })
    }

    fn plimsoll(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_plimsoll"));
        cmd.current_dir(self.repo.path()).args(args);
        if matches!(args.first(), Some(&"sync") | Some(&"plan")) {
            cmd.args([
                "--kubeconfig",
                &self.cluster.cp.kubeconfig.display().to_string(),
            ])
            .args(["--helm", &self.cluster.cp.helm.display().to_string()]);
        }
        cmd.output().unwrap()
    }

    async fn sizes(&self) -> Vec<String> {
        claim_sizes(&self.cluster.client, "mongod-data-").await
    }
}

/// `NAME=CAPACITY` of the namespace's PVCs whose names start with `prefix`,
/// sorted.
async fn claim_sizes(client: &kube::Client, prefix: &str) -> Vec<String> {
    let api: kube::Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
        kube::Api::namespaced(client.clone(), NS);
    let mut v: Vec<String> = api
        .list(&kube::api::ListParams::default())
        .await
        .unwrap()
        .into_iter()
        .filter(|p| {
            p.metadata
                .name
                .as_deref()
                .is_some_and(|n| n.starts_with(prefix))
        })
        .map(|p| {
            format!(
                "{}={}",
                p.metadata.name.clone().unwrap_or_default(),
                p.status
                    .and_then(|s| s.capacity)
                    .and_then(|c| c.get("storage").map(|q| q.0.clone()))
                    .unwrap_or_default()
            )
        })
        .collect();
    v.sort();
    v
}

on_both_versions! {
/// Seed 000 step 5: the PVCs the Percona operator keeps are part of the
/// plan (shown, grown by the operator after the upgrade and waited for),
/// a shrink is refused, and an operator that does not grow them stops the
/// sync naming it.
async fn percona_claims_are_planned_grown_by_the_operator_and_verified() {
    let Some(site) = PerconaSite::start().await else {
        return;
    };
    let o = site.plimsoll(&["sync", "--yes", "--set", "size=25Gi"]);
    assert!(o.status.success(), "{}", text(&o));
    // The operator created its claims at 25Gi.
    for _ in 0..100 {
        if site.sizes().await.iter().filter(|s| s.ends_with("=25Gi")).count() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        site.sizes().await,
        ["mongod-data-mongo-rs0-0=25Gi", "mongod-data-mongo-rs0-1=25Gi", "mongod-data-mongo-rs0-2=25Gi"]
    );

    let o = site.plimsoll(&["plan", "--set", "size=45Gi", "--format", "markdown"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let md = String::from_utf8_lossy(&o.stdout);
    assert!(
        md.contains("mongod-data-mongo-rs0-0 (PerconaServerMongoDB/mongo)")
            && md.contains("wait until PerconaServerMongoDB/mongo has grown PVC mongod-data-mongo-rs0-2 to 45Gi"),
        "{}",
        text(&o)
    );
    let o = site.plimsoll(&["sync", "--yes", "--set", "size=45Gi"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        site.sizes().await,
        ["mongod-data-mongo-rs0-0=45Gi", "mongod-data-mongo-rs0-1=45Gi", "mongod-data-mongo-rs0-2=45Gi"],
        "verified at the new size when the sync returns"
    );

    let o = site.plimsoll(&["plan", "--set", "size=20Gi"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .contains("PVC mongod-data-mongo-rs0-0 would shrink from 45Gi to 20Gi"),
        "{}",
        text(&o)
    );

    site.operator.behaviour.lock().unwrap().stall_resize = true;
    let o = site.plimsoll(&["sync", "--yes", "--set", "size=60Gi", "--expansion-timeout", "3"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("the operator of PerconaServerMongoDB/mongo resizes this claim"),
        "{}",
        text(&o)
    );
}
}

on_both_versions! {
/// Seed 000 with both operators: the scale-up from m to l grows the mongo
/// claims (Percona, once its patch enables expansion) and the kafka claims
/// (Strimzi), and the sync returns with every one verified at the new size.
async fn a_scale_up_grows_the_percona_and_strimzi_claims_and_verifies_them() {
    use plimsoll_testenv::operators::{
        install_percona_crd, install_strimzi_crd, PerconaBehaviour, PerconaOperator, StrimziOperator,
    };
    let Some(env) = Env::require() else {
        return;
    };
    let cluster = Cluster::start(&env, NS).await.expect("cluster");
    install_percona_crd(&cluster.client).await.expect("CRD");
    install_strimzi_crd(&cluster.client).await.expect("CRD");
    let _percona = PerconaOperator::start(cluster.client.clone(), NS, PerconaBehaviour::default()).await;
    let _strimzi = StrimziOperator::start(cluster.client.clone(), NS).await;
    let repo = tempfile::tempdir().unwrap();
    copy_dir(
        &root().join("fixtures/charts/test-operators-1.0.0"),
        &repo.path().join("charts/test-operators"),
    );
    std::fs::write(
        repo.path().join("plimsoll.yaml"),
        format!(
            "name: data\nvariables:\n  segment: {{values: [m, l], default: m}}\nstages: [data]\nreleases:\n\
             \x20 - name: data\n    chart: charts/test-operators\n    version: 1.0.0\n    namespace: {NS}\n    stage: data\n    layers:\n      - ${{segment}}.yaml\n\
             \x20   patches:\n      - apiVersion: psmdb.percona.com/v1\n        kind: PerconaServerMongoDB\n        name: mongo-replicaset\n        patch:\n          - {{op: add, path: /spec/enableVolumeExpansion, value: true}}\n"
        ),
    )
    .unwrap();
    std::fs::write(repo.path().join("m.yaml"), "mongo:\n  size: 25Gi\nkafka:\n  size: 20Gi\n").unwrap();
    std::fs::write(repo.path().join("l.yaml"), "mongo:\n  size: 45Gi\nkafka:\n  size: 40Gi\n").unwrap();
    let sync = |segment: &str| {
        Command::new(env!("CARGO_BIN_EXE_plimsoll"))
            .current_dir(repo.path())
            .args(["sync", "--yes", "--set", &format!("segment={segment}")])
            .args(["--kubeconfig", &cluster.cp.kubeconfig.display().to_string()])
            .args(["--helm", &cluster.cp.helm.display().to_string()])
            .output()
            .unwrap()
    };
    let sizes = || claim_sizes(&cluster.client, "");
    let o = sync("m");
    assert!(o.status.success(), "{}", text(&o));
    // Installed: the operators made their claims (the sync waited for the
    // resources to be current, so they are there).
    assert_eq!(
        sizes().await,
        [
            "data-0-kafka-cluster-kafka-0=20Gi", "data-0-kafka-cluster-kafka-1=20Gi", "data-0-kafka-cluster-kafka-2=20Gi",
            "mongod-data-mongo-replicaset-rs0-0=25Gi", "mongod-data-mongo-replicaset-rs0-1=25Gi", "mongod-data-mongo-replicaset-rs0-2=25Gi",
        ]
    );
    // The plan for review, from the live cluster: golden text and Markdown.
    for (format, golden) in [("text", "operators-m-to-l.plan.txt"), ("markdown", "operators-m-to-l.plan.md")] {
        let o = Command::new(env!("CARGO_BIN_EXE_plimsoll"))
            .current_dir(repo.path())
            .args(["plan", "--set", "segment=l", "--format", format])
            .args(["--kubeconfig", &cluster.cp.kubeconfig.display().to_string()])
            .args(["--helm", &cluster.cp.helm.display().to_string()])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        support::golden("sync", golden, &String::from_utf8_lossy(&o.stdout));
    }
    let o = sync("l");
    assert!(o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    for pvc in ["mongod-data-mongo-replicaset-rs0-2", "data-0-kafka-cluster-kafka-2"] {
        assert!(err.contains(&format!("has grown PVC {pvc}")), "waited for {pvc}: {}", text(&o));
    }
    assert_eq!(
        sizes().await,
        [
            "data-0-kafka-cluster-kafka-0=40Gi", "data-0-kafka-cluster-kafka-1=40Gi", "data-0-kafka-cluster-kafka-2=40Gi",
            "mongod-data-mongo-replicaset-rs0-0=45Gi", "mongod-data-mongo-replicaset-rs0-1=45Gi", "mongod-data-mongo-replicaset-rs0-2=45Gi",
        ],
        "verified at the new sizes when the sync returns"
    );
}
}
