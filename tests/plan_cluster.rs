//! `plimsoll snapshot` and `plimsoll plan` against a real control plane.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use kube::api::Api;
use plimsoll_testenv::actors::{create_storage_class, StorageActor, StorageBehaviour};
use plimsoll_testenv::{on_both_versions, Cluster, Env};

mod support;
use support::{commit_all, copy_dir, plimsoll};

/// Installs the rendered `data` release with helm, as an operator would.
fn helm_install_rendered(helm: &std::path::Path, repo: &std::path::Path, ns: &str) {
    let o = Command::new(helm)
        .args([
            "upgrade",
            "--install",
            "data",
            "charts/test-data",
            "--namespace",
            ns,
        ])
        .args(["-f", "rendered/data.yaml"])
        .current_dir(repo)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// A deployment repository for the test data chart, sized by segment.
fn repo(ns: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    copy_dir(
        &root.join("fixtures/charts/test-data-1.0.0"),
        &dir.path().join("charts/test-data"),
    );
    let w = |rel: &str, text: &str| {
        let p = dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    w("profiles/m.yaml", "mariadb-galera:\n  replicaCount: 2\n  persistence:\n    size: 10Gi\nmongo-replicaset:\n  replicaCount: 1\n  persistence:\n    size: 25Gi\n");
    w("profiles/l.yaml", "mariadb-galera:\n  replicaCount: 2\n  persistence:\n    size: 15Gi\nmongo-replicaset:\n  replicaCount: 1\n  persistence:\n    size: 45Gi\n");
    w(
        "site.yaml",
        "mariadb-galera:\n  rootUser:\n    password: s3cret\n",
    );
    w(
        "plimsoll.yaml",
        &format!(
            "variables:\n  segment: {{values: [m, l], default: m}}\nreleases:\n  - name: data\n    chart: charts/test-data\n    version: 1.0.0\n    namespace: {ns}\n    stage: data\n    layers:\n      - profiles/${{segment}}.yaml\n      - site.yaml\n"
        ),
    );
    dir
}

/// The rendered `data` release installed with helm (as an operator would)
/// and its mariadb ready; the repository it came from.
async fn install_and_wait(cluster: &Cluster) -> tempfile::TempDir {
    let ns = &cluster.namespace;
    let repo = repo(ns);
    let r = repo.path();
    let o = plimsoll(r, &["render"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    helm_install_rendered(&cluster.cp.helm, r, ns);
    let sts: Api<StatefulSet> = Api::namespaced(cluster.client.clone(), ns);
    let deadline = Instant::now() + Duration::from_secs(90);
    while sts
        .get("mariadb-galera")
        .await
        .ok()
        .and_then(|s| s.status)
        .and_then(|s| s.ready_replicas)
        != Some(2)
    {
        assert!(Instant::now() < deadline, "not ready");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    repo
}

on_both_versions! {
async fn snapshot_then_plan_offline_matches_plan_online() {
    let Some(env) = Env::require() else { return };
    let cluster = Cluster::start(&env, "tp").await.expect("cluster");
    let cp = &cluster.cp;

    let repo = install_and_wait(&cluster).await;
    let r = repo.path();

    let kc = cp.kubeconfig.display().to_string();
    let helm = cp.helm.display().to_string();
    let o = plimsoll(r, &["snapshot", "--kubeconfig", &kc, "--out", "live.json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let snapshot = std::fs::read_to_string(r.join("live.json")).unwrap();
    assert!(snapshot.contains("data-mariadb-galera-1"), "{snapshot}");

    // Nothing to do at the deployed segment: exit 0.
    let o = plimsoll(r, &["plan", "--live", "live.json", "--helm", &helm]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("No changes"), "{out}");

    // Scaling to l: exit 2, expansions before the orphan re-create and upgrade.
    let offline = plimsoll(
        r,
        &[
            "plan",
            "--live",
            "live.json",
            "--set",
            "segment=l",
            "--format",
            "markdown",
            "--helm",
            &helm,
        ],
    );
    let md = String::from_utf8_lossy(&offline.stdout).into_owned();
    assert_eq!(
        offline.status.code(),
        Some(2),
        "{md}{}",
        String::from_utf8_lossy(&offline.stderr)
    );
    assert!(
        md.contains("| data-mariadb-galera-0 | 10Gi | 15Gi | plimsoll-test-expandable | yes |"),
        "{md}"
    );
    assert!(
        md.contains("1. expand PVC data-mariadb-galera-0 from 10Gi to 15Gi"),
        "{md}"
    );
    assert!(
        md.contains("delete StatefulSet mariadb-galera with orphan propagation"),
        "{md}"
    );
    assert!(!md.contains("s3cret"), "secrets never shown: {md}");

    // The same plan from the cluster directly.
    let online = plimsoll(
        r,
        &[
            "plan",
            "--kubeconfig",
            &kc,
            "--set",
            "segment=l",
            "--format",
            "markdown",
            "--helm",
            &helm,
        ],
    );
    assert_eq!(online.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&online.stdout),
        md,
        "offline plan equals online plan"
    );

    // Git revisions: the deployed state, then a commit growing the m profile;
    // the working tree is dirtied to show it is not what `--rev` reads.
    let git = git2::Repository::init(r).unwrap();
    let commit = |message: &str| commit_all(&git, message);
    let deployed = commit("deployed: segment m");
    let l_profile = std::fs::read_to_string(r.join("profiles/l.yaml")).unwrap();
    std::fs::write(r.join("profiles/m.yaml"), &l_profile).unwrap();
    let grown = commit("grow m");
    std::fs::write(r.join("profiles/m.yaml"), "not: [valid\n").unwrap();
    let o = plimsoll(
        r,
        &[
            "plan",
            "--live",
            "live.json",
            "--rev",
            &deployed,
            "--helm",
            &helm,
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let o = plimsoll(
        r,
        &[
            "plan",
            "--live",
            "live.json",
            "--rev",
            &grown,
            "--format",
            "markdown",
            "--helm",
            &helm,
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        md,
        "the grown commit plans like segment l"
    );

    // --base: the rendered values diff between the two commits, each change
    // attributed to the layer that set it.
    let o = plimsoll(
        r,
        &[
            "plan",
            "--live",
            "live.json",
            "--rev",
            &grown,
            "--base",
            &deployed,
            "--helm",
            &helm,
        ],
    );
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(
        o.status.code(),
        Some(2),
        "{text}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        text.contains(&format!("Values of data changed since {deployed}:")),
        "{text}"
    );
    assert!(
        text.contains("  mariadb-galera.persistence.size: 10Gi -> 15Gi  (profiles/m.yaml:4)"),
        "{text}"
    );
    assert!(
        text.contains("  mongo-replicaset.persistence.size: 25Gi -> 45Gi  (profiles/m.yaml:8)"),
        "{text}"
    );
    assert!(
        !text.contains("password"),
        "unchanged values are not listed: {text}"
    );

    // Refusals, end to end against what is deployed (the working tree is
    // the desired state again).
    let refusal = |profile: &str| {
        std::fs::write(r.join("profiles/m.yaml"), profile).unwrap();
        let o = plimsoll(r, &["plan", "--live", "live.json", "--helm", &helm]);
        assert_eq!(
            o.status.code(),
            Some(1),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let out = refusal("mariadb-galera:\n  replicaCount: 2\n  persistence:\n    size: 5Gi\nmongo-replicaset:\n  replicaCount: 1\n  persistence:\n    size: 25Gi\n");
    assert!(
        out.contains("REFUSED: data: PVC data-mariadb-galera-0 would shrink from 10Gi to 5Gi"),
        "{out}"
    );
    let out = refusal("mariadb-galera:\n  replicaCount: 2\n  persistence:\n    size: 10Gi\n    storageClass: other-class\nmongo-replicaset:\n  replicaCount: 1\n  persistence:\n    size: 25Gi\n");
    assert!(
        out.contains("REFUSED: data: PVC data-mariadb-galera-0 would move from storage class plimsoll-test-expandable to other-class"),
        "{out}"
    );
}
}

on_both_versions! {
async fn growth_on_a_class_without_expansion_needs_backup_and_restore() {
    let Some(env) = Env::require() else { return };
    let cluster = Cluster::start(&env, "fixed").await.expect("cluster");
    let (cp, client, ns) = (
        &cluster.cp,
        cluster.client.clone(),
        cluster.namespace.clone(),
    );
    create_storage_class(&client, "plimsoll-test-fixed", false)
        .await
        .unwrap();
    let _fixed = StorageActor::start(
        client.clone(),
        "plimsoll-test-fixed",
        StorageBehaviour::default(),
    )
    .await;
    let repo = repo(&ns);
    let r = repo.path();
    std::fs::write(
        r.join("site.yaml"),
        "mariadb-galera:\n  persistence:\n    storageClass: plimsoll-test-fixed\nmongo-replicaset:\n  persistence:\n    storageClass: plimsoll-test-fixed\n",
    )
    .unwrap();
    assert!(plimsoll(r, &["render"]).status.success());
    helm_install_rendered(&cp.helm, r, &ns);
    let pvcs: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
        Api::namespaced(client.clone(), &ns);
    let deadline = Instant::now() + Duration::from_secs(90);
    while pvcs
        .list(&Default::default())
        .await
        .map(|l| l.items.len())
        .unwrap_or(0)
        < 3
    {
        assert!(Instant::now() < deadline, "claims not created");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let kc = cp.kubeconfig.display().to_string();
    let helm = cp.helm.display().to_string();
    let o = plimsoll(
        r,
        &[
            "plan",
            "--kubeconfig",
            &kc,
            "--set",
            "segment=l",
            "--helm",
            &helm,
        ],
    );
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(
        o.status.code(),
        Some(1),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        out.contains(
            "REFUSED: data: PVC data-mariadb-galera-0 needs 10Gi -> 15Gi but storage class plimsoll-test-fixed does not allow volume expansion; the backup, reinstall and restore procedure is required (never run automatically)"
        ),
        "{out}"
    );
}
}

on_both_versions! {
/// The review loop: a plan made offline from a snapshot is saved with
/// its digests; `sync --plan` refuses it, changing nothing, once the
/// repository or the cluster moved, and runs exactly it otherwise.
async fn a_saved_plan_runs_exactly_or_not_at_all() {
    let Some(env) = Env::require() else { return };
    let cluster = Cluster::start(&env, "tp").await.expect("cluster");
    let (cp, client, ns) = (
        &cluster.cp,
        cluster.client.clone(),
        cluster.namespace.clone(),
    );
    let repo = install_and_wait(&cluster).await;
    let r = repo.path();
    let kc = cp.kubeconfig.display().to_string();
    let helm = cp.helm.display().to_string();
    let o = plimsoll(r, &["snapshot", "--kubeconfig", &kc, "--out", "live.json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // On the pull request: no cluster credentials, a snapshot.
    let o = plimsoll(
        r,
        &["plan", "--live", "live.json", "--set", "segment=l", "--helm", &helm, "--out", "plan.json"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(r.join("plan.json")).unwrap()).unwrap();
    assert_eq!(saved["format"], "plimsoll-saved-plan/v1");
    assert!(saved["plan"]["releases"][0]["steps"].as_array().unwrap().len() > 3, "{saved}");
    let sync = |extra: &[&str]| {
        let mut args = vec!["sync", "--yes", "--working-tree", "--set", "segment=l", "--plan", "plan.json"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--kubeconfig", &kc, "--helm", &helm]);
        plimsoll(r, &args)
    };
    let sizes = || async {
        let pvcs: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
            Api::namespaced(client.clone(), &ns);
        let mut out: Vec<String> = pvcs
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .iter()
            .map(|p| {
                let q = p.spec.as_ref().and_then(|s| s.resources.as_ref()).and_then(|r| r.requests.as_ref()).and_then(|r| r.get("storage")).map(|q| q.0.clone()).unwrap_or_default();
                format!("{}={q}", p.metadata.name.clone().unwrap_or_default())
            })
            .collect();
        out.sort();
        out
    };
    let before = sizes().await;

    // The repository moved: refused, nothing changed.
    let site = std::fs::read_to_string(r.join("site.yaml")).unwrap();
    std::fs::write(r.join("site.yaml"), format!("{site}extra: 1\n")).unwrap();
    let o = sync(&[]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("the saved plan no longer applies: the repository's desired state is not the one planned"), "{err}");
    std::fs::write(r.join("site.yaml"), &site).unwrap();

    // The cluster moved (the storage class edited by hand): refused,
    // nothing changed.
    let classes: Api<k8s_openapi::api::storage::v1::StorageClass> = Api::all(client.clone());
    let expansion = |allowed: bool| {
        let classes = classes.clone();
        async move {
            classes
                .patch(
                    plimsoll_testenv::EXPANDABLE_CLASS,
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(serde_json::json!({"allowVolumeExpansion": allowed})),
                )
                .await
                .unwrap();
        }
    };
    expansion(false).await;
    let o = sync(&[]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("the saved plan no longer applies: the cluster changed since the plan was made"),
        "{err}"
    );
    assert_eq!(sizes().await, before, "nothing changed");
    expansion(true).await;

    // As planned: it runs, and does what was reviewed.
    let o = sync(&[]);
    assert!(o.status.success(), "{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    let after = sizes().await;
    assert!(after.contains(&"data-mariadb-galera-0=15Gi".to_string()), "{after:?}");
}
}
