//! `plimsoll plan` and `plimsoll sync` of the bundled example (its profiles,
//! overlays and site values, with the test charts standing in for the
//! ThingPark charts) against a real control plane, Helm engine, and the
//! node and storage-driver stand-ins.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Secret};
use kube::api::{Api, ListParams, PostParams};
use plimsoll_testenv::actors::{create_storage_class, StorageActor, StorageBehaviour};
use plimsoll_testenv::{on_both_versions, Cluster, Env};
use serde_json::json;

mod support;
use support::{commit_all, copy_dir, text};

const NS: &str = "thingpark";
const CLASSES: [&str; 2] = ["thingpark-csi-gp3-xfs", "thingpark-csi-gp3-ext4"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The bundled example with the test charts: the data stack's layers for
/// `thingpark-data`, the application stack's for `thingpark-enterprise`.
fn example_repo(patch: bool) -> tempfile::TempDir {
    support::example_repo(NS, patch)
}

struct Site {
    cluster: Cluster,
    storage: Vec<StorageActor>,
    repo: tempfile::TempDir,
}

impl Site {
    fn kubeconfig(&self) -> String {
        self.cluster.cp.kubeconfig.display().to_string()
    }

    fn helm(&self) -> String {
        self.cluster.cp.helm.display().to_string()
    }

    fn plimsoll(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_plimsoll"));
        cmd.current_dir(self.repo.path()).args(args);
        if matches!(
            args.first(),
            Some(&"plan") | Some(&"sync") | Some(&"snapshot")
        ) {
            cmd.args(["--kubeconfig", &self.kubeconfig()]);
        }
        if matches!(args.first(), Some(&"plan") | Some(&"sync")) {
            cmd.args(["--helm", &self.helm()]);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("run plimsoll")
    }

    fn sync(&self, segment: &str, extra: &[&str], env: &[(&str, &str)]) -> Output {
        let set = format!("segment={segment}");
        let mut args = vec!["sync", "--yes", "--set", &set];
        args.extend_from_slice(extra);
        self.plimsoll(&args, env)
    }

    /// `plimsoll sync --yes ARGS` in the background, output captured.
    fn spawn_sync(&self, args: &[&str]) -> std::process::Child {
        Command::new(env!("CARGO_BIN_EXE_plimsoll"))
            .current_dir(self.repo.path())
            .args(["sync", "--yes"])
            .args(args)
            .args(["--kubeconfig", &self.kubeconfig(), "--helm", &self.helm()])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Waits until the journal records a completed step whose id contains
    /// `step`.
    async fn wait_for_step(&self, step: &str) {
        let api: Api<ConfigMap> = Api::namespaced(self.client(), "plimsoll");
        for _ in 0..600 {
            let done = api
                .get_opt("plimsoll-journal-example")
                .await
                .ok()
                .flatten()
                .and_then(|cm| cm.data)
                .is_some_and(|d| d.get("completed").is_some_and(|c| c.contains(step)));
            if done {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the journal never recorded {step}");
    }

    fn client(&self) -> kube::Client {
        self.cluster.client.clone()
    }

    async fn pvc_uids(&self) -> BTreeMap<String, (String, String)> {
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client(), NS);
        api.list(&ListParams::default())
            .await
            .unwrap()
            .into_iter()
            .map(|p| {
                let name = p.metadata.name.clone().unwrap();
                let request = p.spec.unwrap().resources.unwrap().requests.unwrap()["storage"]
                    .0
                    .clone();
                (name, (p.metadata.uid.unwrap(), request))
            })
            .collect()
    }

    async fn release_revision(&self, release: &str) -> usize {
        let api: Api<Secret> = Api::namespaced(self.client(), NS);
        api.list(&ListParams::default().labels(&format!("owner=helm,name={release}")))
            .await
            .unwrap()
            .items
            .len()
    }

    async fn journal(&self) -> BTreeMap<String, String> {
        let api: Api<ConfigMap> = Api::namespaced(self.client(), "plimsoll");
        api.get("plimsoll-journal-example")
            .await
            .unwrap()
            .data
            .unwrap()
    }
}

async fn site(storage: StorageBehaviour, patch: bool) -> Option<Site> {
    let env = Env::require()?;
    let cluster = Cluster::start(&env, NS).await.expect("cluster");
    let mut actors = Vec::new();
    for class in CLASSES {
        create_storage_class(&cluster.client, class, true)
            .await
            .unwrap();
        actors.push(StorageActor::start(cluster.client.clone(), class, storage.clone()).await);
    }
    Some(Site {
        cluster,
        storage: actors,
        repo: example_repo(patch),
    })
}

/// A site with the example installed at segment m by `plimsoll sync`; the
/// storage stand-in stalls the resizes of the PVCs named.
async fn installed_site(stall: &[&str]) -> Option<Site> {
    let storage = StorageBehaviour {
        stall_resize: stall.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    let site = site(storage, false).await?;
    let o = site.sync("m", &[], &[]);
    assert!(o.status.success(), "{}", text(&o));
    Some(site)
}

/// Compares with a golden file; `UPDATE_EXPECT=1` rewrites it.
fn golden(name: &str, actual: &str) {
    support::golden("sync", name, actual)
}

/// Creates every object of `deploy/plimsoll-daemon.yaml`; returns their kinds.
async fn apply_manifest(client: &kube::Client) -> Vec<String> {
    let text = std::fs::read(root().join("deploy/plimsoll-daemon.yaml")).unwrap();
    let mut kinds = Vec::new();
    for doc in plimsoll_yaml::parse_documents(&text, 0).unwrap() {
        let json = plimsoll_yaml::json::to_json(&doc).unwrap();
        let obj: kube::api::DynamicObject = serde_json::from_str(&json).unwrap();
        let types = obj.types.clone().unwrap();
        let gvk = kube::api::GroupVersionKind::try_from(&types).unwrap();
        let (ar, caps) = kube::discovery::pinned_kind(client, &gvk).await.unwrap();
        let api: Api<kube::api::DynamicObject> = match caps.scope {
            kube::discovery::Scope::Namespaced => Api::namespaced_with(
                client.clone(),
                obj.metadata.namespace.as_deref().unwrap(),
                &ar,
            ),
            kube::discovery::Scope::Cluster => Api::all_with(client.clone(), &ar),
        };
        api.create(&PostParams::default(), &obj)
            .await
            .unwrap_or_else(|e| panic!("{} {:?}: {e}", types.kind, obj.metadata.name));
        kinds.push(types.kind);
    }
    kinds
}

/// What an operator such as Percona's would have created: a CRD and one
/// resource whose volume expansion is off.
async fn create_operator_resource(client: &kube::Client) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "perconaservermongodbs.psmdb.percona.com"},
        "spec": {"group": "psmdb.percona.com", "scope": "Namespaced",
                 "names": {"plural": "perconaservermongodbs", "singular": "perconaservermongodb",
                           "kind": "PerconaServerMongoDB", "shortNames": ["psmdb"]},
                 "versions": [{"name": "v1", "served": true, "storage": true,
                               "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
    }))
    .unwrap();
    Api::<CustomResourceDefinition>::all(client.clone())
        .create(&PostParams::default(), &crd)
        .await
        .unwrap();
    let ar = kube::api::ApiResource {
        group: "psmdb.percona.com".into(),
        version: "v1".into(),
        api_version: "psmdb.percona.com/v1".into(),
        kind: "PerconaServerMongoDB".into(),
        plural: "perconaservermongodbs".into(),
    };
    let api: Api<kube::api::DynamicObject> = Api::namespaced_with(client.clone(), NS, &ar);
    let obj: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "psmdb.percona.com/v1", "kind": "PerconaServerMongoDB",
        "metadata": {"name": "mongo", "namespace": NS},
        "spec": {"enableVolumeExpansion": false, "replsets": [{"name": "rs0", "size": 3}]},
        // As the operator reports a settled cluster (no status subresource
        // here, so it is set on create).
        "status": {"state": "ready"}
    }))
    .unwrap();
    // The CRD takes a moment to be served.
    let mut last = None;
    for _ in 0..100 {
        match api.create(&PostParams::default(), &obj).await {
            Ok(_) => return,
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("could not create the PerconaServerMongoDB resource: {last:?}");
}

on_both_versions! {
async fn scale_the_bundled_example_from_m_to_l_end_to_end() {
    let Some(site) = site(StorageBehaviour::default(), true).await else {
        return;
    };

    // Install at m: both releases, data stack first.
    let o = site.sync("m", &[], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("Sync complete"),
        "{}",
        text(&o)
    );
    let installed = site.pvc_uids().await;
    assert_eq!(installed.len(), 8, "{installed:?}");
    assert_eq!(installed["data-mariadb-galera-0"].1, "10Gi");
    create_operator_resource(&site.client()).await;
    let sts: Api<StatefulSet> = Api::namespaced(site.client(), NS);
    let mariadb_uid = sts.get("mariadb-galera").await.unwrap().metadata.uid;

    // Plan at m: nothing to do. Plan to l: the golden plan.
    let o = site.plimsoll(&["plan", "--set", "segment=m"], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("patch PerconaServerMongoDB/mongo"),
        "the operator resource's patch is planned even without a size change: {}",
        text(&o)
    );
    let o = site.plimsoll(&["plan", "--set", "segment=l"], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    golden("m-to-l.plan.txt", &String::from_utf8_lossy(&o.stdout));
    let o = site.plimsoll(&["plan", "--set", "segment=l", "--format", "markdown"], &[]);
    golden("m-to-l.plan.md", &String::from_utf8_lossy(&o.stdout));

    // A dry run changes nothing.
    let o = site.sync("l", &["--dry-run"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(site.pvc_uids().await, installed);

    // Sync to l.
    let o = site.sync("l", &[], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(out.contains("Sync complete"), "{}", text(&o));
    assert!(out.contains("8 expand-pvc"), "{}", text(&o));
    assert!(out.contains("1 patch-resource"), "{}", text(&o));
    assert!(out.contains("3 recreate-stateful-set"), "{}", text(&o));
    assert!(out.contains("2 helm-upgrade"), "{}", text(&o));

    // Volumes grew in place: same claims (uids), larger requests.
    let after = site.pvc_uids().await;
    assert_eq!(after.len(), installed.len());
    for (name, (uid, request)) in &after {
        assert_eq!(uid, &installed[name].0, "PVC {name} kept");
        let want = if name.starts_with("data-mariadb") {
            "15Gi"
        } else if name.starts_with("data-mongo") {
            "45Gi"
        } else {
            &installed[name].1
        };
        if name.starts_with("data-lrc") {
            assert_ne!(request, &installed[name].1, "lrc grew: {after:?}");
        } else {
            assert_eq!(request, want, "{name}");
        }
    }
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(site.client(), NS);
    let cap = pvcs
        .get("data-mariadb-galera-0")
        .await
        .unwrap()
        .status
        .unwrap()
        .capacity
        .unwrap();
    assert_eq!(cap["storage"].0, "15Gi");
    // The StatefulSet was re-created (new uid) with the new claim template.
    let s = sts.get("mariadb-galera").await.unwrap();
    assert_ne!(s.metadata.uid, mariadb_uid);
    let tmpl = &s.spec.unwrap().volume_claim_templates.unwrap()[0];
    assert_eq!(
        tmpl.spec
            .as_ref()
            .unwrap()
            .resources
            .as_ref()
            .unwrap()
            .requests
            .as_ref()
            .unwrap()["storage"]
            .0,
        "15Gi"
    );
    assert_eq!(site.release_revision("thingpark-data").await, 2);
    assert_eq!(site.release_revision("thingpark-enterprise").await, 2);
    let journal = site.journal().await;
    assert_eq!(journal["status"], "succeeded", "{journal:?}");

    // Planning the same again: nothing. Syncing again: nothing.
    let o = site.plimsoll(&["plan", "--set", "segment=l"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("No changes"));
    let o = site.sync("l", &[], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("No changes"),
        "{}",
        text(&o)
    );
    assert_eq!(site.release_revision("thingpark-data").await, 2);
    drop(site.storage);
}
}

on_both_versions! {
/// The helm command line itself (the official Helm 4 binary), as
/// production runs it, scaling the example from m to l. Its environment
/// names no cluster (the wrapper points `KUBECONFIG` at nothing): it must be
/// told the one Plimsoll was given. On servers that validate fields
/// themselves (1.27 on) helm's own OpenAPI check is turned off; on older
/// ones it stays.
async fn the_helm_command_line_scales_the_example_on_the_cluster_plimsoll_was_given() {
    let Some(site) = site(StorageBehaviour::default(), false).await else {
        return;
    };
    let calls = tempfile::tempdir().unwrap();
    let log = calls.path().join("calls");
    let helm = calls.path().join("helm");
    std::fs::write(
        &helm,
        format!(
            "#!/bin/sh\necho \"$*\" >> {}\nexec {} \"$@\"\n",
            log.display(),
            site.cluster.cp.helm_cli.display()
        ),
    )
    .unwrap();
    Command::new("chmod").arg("+x").arg(&helm).status().unwrap();
    let sync = |segment: &str| {
        Command::new(env!("CARGO_BIN_EXE_plimsoll"))
            .current_dir(site.repo.path())
            .args(["sync", "--yes", "--set", &format!("segment={segment}")])
            .args(["--kubeconfig", &site.kubeconfig()])
            .arg("--helm")
            .arg(&helm)
            .output()
            .unwrap()
    };

    let o = sync("m");
    assert!(o.status.success(), "{}", text(&o));
    let installed = site.pvc_uids().await;
    assert_eq!(installed.len(), 8, "{installed:?}");
    let o = sync("l");
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(out.contains("8 expand-pvc") && out.contains("2 helm-upgrade"), "{}", text(&o));
    let after = site.pvc_uids().await;
    for (name, (uid, _)) in &after {
        assert_eq!(uid, &installed[name].0, "PVC {name} kept");
    }
    assert_eq!(after["data-mariadb-galera-0"].1, "15Gi");
    assert_eq!(site.release_revision("thingpark-data").await, 2);
    assert_eq!(site.release_revision("thingpark-enterprise").await, 2);
    let o = sync("l");
    assert!(String::from_utf8_lossy(&o.stdout).contains("No changes"), "{}", text(&o));

    let calls = std::fs::read_to_string(&log).unwrap();
    let upgrades: Vec<&str> = calls.lines().filter(|l| l.starts_with("upgrade ")).collect();
    assert_eq!(upgrades.len(), 4, "{calls}");
    let told = format!("--kubeconfig={}", site.kubeconfig());
    let validates = Env::discover().unwrap().version != plimsoll_testenv::KubeVersion::V1_20;
    for call in &upgrades {
        assert!(call.contains(&told), "{call}");
        assert_eq!(call.contains("--disable-openapi-validation"), validates, "{call}");
    }
    drop(site.storage);
}
}

on_both_versions! {
/// What leaving helm's OpenAPI check off on 1.27 and later relies on: the
/// server itself refuses a chart's unknown field. On 1.20 helm's check
/// stays and refuses the chart before anything is applied.
async fn a_chart_with_an_unknown_field_is_refused_on_either_server() {
    let Some(env) = Env::require() else { return };
    let cluster = Cluster::start(&env, "unknown-field").await.expect("cluster");
    let ns = cluster.namespace.clone();
    let repo = tempfile::tempdir().unwrap();
    let r = repo.path();
    std::fs::create_dir_all(r.join("charts/bad/templates")).unwrap();
    std::fs::write(r.join("charts/bad/Chart.yaml"), "apiVersion: v2\nname: bad\nversion: 1.0.0\n").unwrap();
    std::fs::write(
        r.join("charts/bad/templates/all.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bad-first}\ndata: {a: b}\n---\n\
         apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: bad}\nspec:\n  replicas: 1\n  replicaz: 3\n\
         \x20 selector: {matchLabels: {app: bad}}\n  template:\n    metadata: {labels: {app: bad}}\n\
         \x20   spec: {containers: [{name: main, image: registry.invalid/bad:1}]}\n",
    )
    .unwrap();
    std::fs::write(r.join("values.yaml"), "a: 1\n").unwrap();
    std::fs::write(
        r.join("plimsoll.yaml"),
        format!("name: bad\nreleases:\n  - {{name: bad, chart: charts/bad, version: 1.0.0, namespace: {ns}, stage: apps, layers: [values.yaml]}}\n"),
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_plimsoll"))
        .current_dir(r)
        .args(["sync", "--yes", "--kubeconfig"])
        .arg(&cluster.cp.kubeconfig)
        .arg("--helm")
        .arg(&cluster.cp.helm_cli)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    let configmaps: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), &ns);
    let first = configmaps.get_opt("bad-first").await.unwrap();
    if env.version == plimsoll_testenv::KubeVersion::V1_20 {
        assert!(err.contains("unknown field \"replicaz\""), "{}", text(&o));
        assert!(first.is_none(), "helm's check refuses before anything is applied");
    } else {
        assert!(err.contains(".spec.replicaz: field not declared in schema"), "{}", text(&o));
    }
}
}

on_both_versions! {
async fn a_killed_sync_resumes_after_the_pvc_patches_and_after_the_orphan_delete() {
    let Some(site) = installed_site(&[]).await else {
        return;
    };
    let installed = site.pvc_uids().await;
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(site.client(), NS);
    let pod_uids = |list: kube::core::ObjectList<k8s_openapi::api::core::v1::Pod>| -> Vec<String> {
        let mut v: Vec<String> = list
            .items
            .into_iter()
            .filter_map(|p| p.metadata.uid)
            .collect();
        v.sort();
        v
    };
    let mariadb = ListParams::default().labels("app.kubernetes.io/name=mariadb-galera");
    let mariadb_pods_before = pod_uids(pods.list(&mariadb).await.unwrap());

    // Killed right after the PVC patches.
    let o = site.sync("l", &[], &[("PLIMSOLL_FAULT_ABORT_AFTER", "expand-pvc")]);
    assert!(!o.status.success(), "{}", text(&o));
    assert_eq!(o.status.code(), None, "killed by a signal: {}", text(&o));
    let j = site.journal().await;
    assert_eq!(j["status"], "running");
    assert!(
        j["completed"].contains("thingpark-data/2/expand-pvc/data-mariadb-galera-1"),
        "{j:?}"
    );
    assert!(!j["completed"].contains("wait-for-expansion"), "{j:?}");
    assert_eq!(site.pvc_uids().await["data-mariadb-galera-0"].1, "15Gi");

    // Restarted, and killed again right after the orphan deletes.
    let o = site.sync(
        "l",
        &[],
        &[("PLIMSOLL_FAULT_ABORT_AFTER", "recreate-stateful-set")],
    );
    assert_eq!(o.status.code(), None, "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("resuming plan"),
        "{}",
        text(&o)
    );
    let sts: Api<StatefulSet> = Api::namespaced(site.client(), NS);
    assert!(
        sts.get_opt("mariadb-galera").await.unwrap().is_none(),
        "orphan-deleted"
    );
    assert_eq!(
        pod_uids(pods.list(&mariadb).await.unwrap()),
        mariadb_pods_before,
        "the same pods (uids) stay after the orphan delete"
    );
    assert_eq!(mariadb_pods_before.len(), 3);

    // Restarted: completes without repeating what was done.
    let o = site.sync("l", &[], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(out.contains("Sync complete (resumed)"), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        err.contains("resuming plan")
            && err
                .lines()
                .find(|l| l.starts_with("[1/"))
                .is_some_and(|l| l.contains("helm upgrade --install thingpark-data")),
        "resumes at the upgrade that re-creates the deleted StatefulSets: {}",
        text(&o)
    );
    for done in [
        "expand PVC data-mariadb",
        "expand PVC data-mongo",
        "delete StatefulSet mariadb-galera",
        "delete StatefulSet mongo-replicaset",
    ] {
        assert!(!err.contains(done), "{done} is not repeated: {}", text(&o));
    }
    let after = site.pvc_uids().await;
    for (name, (uid, _)) in &installed {
        assert_eq!(&after[name].0, uid, "PVC {name} kept");
    }
    assert_eq!(after["data-mongo-replicaset-0"].1, "45Gi");
    assert!(sts.get_opt("mariadb-galera").await.unwrap().is_some());
    let o = site.plimsoll(&["plan", "--set", "segment=l"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}
}

on_both_versions! {
/// A sync killed after a step took effect but before the journal recorded
/// it: the next sync finds nothing left to do and records the journal as
/// complete (no journal stays `running` for work that is done); a dry run
/// writes nothing, the journal included.
async fn an_interrupted_journal_whose_work_is_done_is_recorded_complete() {
    let Some(site) = installed_site(&[]).await else {
        return;
    };
    // As if killed after the last step's effect, before its record.
    let api: Api<ConfigMap> = Api::namespaced(site.client(), "plimsoll");
    let mut cm = api.get("plimsoll-journal-example").await.unwrap();
    let data = cm.data.as_mut().unwrap();
    let completed: Vec<String> = data["completed"].lines().map(str::to_string).collect();
    assert!(completed.len() > 1, "{completed:?}");
    data.insert("completed".into(), completed[..completed.len() - 1].join("\n"));
    data.insert("status".into(), "running".into());
    api.replace("plimsoll-journal-example", &PostParams::default(), &cm)
        .await
        .unwrap();

    let o = site.plimsoll(&["sync", "--dry-run", "--set", "segment=m"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(site.journal().await["status"], "running", "a dry run writes nothing");

    let o = site.sync("m", &[], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("remaining steps are done already"),
        "{}",
        text(&o)
    );
    let j = site.journal().await;
    assert_eq!(j["status"], "succeeded", "{j:?}");
    assert_eq!(j["message"], "its remaining steps were found done already");
}
}

/// The status of a release's newest revision (the storage Secret's label).
async fn newest_status(client: &kube::Client, release: &str) -> (u64, String) {
    let api: Api<Secret> = Api::namespaced(client.clone(), NS);
    api.list(&ListParams::default().labels(&format!("owner=helm,name={release}")))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|s| {
            let l = s.metadata.labels?;
            Some((l.get("version")?.parse().ok()?, l.get("status")?.clone()))
        })
        .max()
        .unwrap_or_default()
}

on_both_versions! {
/// A helm upgrade cut short (the process killed with its helm, as a pod's
/// death does) leaves the release `pending-upgrade`, which Helm refuses to
/// upgrade ever after; here after the StatefulSets were orphan-deleted, so
/// only that upgrade re-creates them. The next sync marks the revision
/// failed (nothing rolled back) and finishes the upgrade; no claim lost.
async fn a_helm_upgrade_cut_short_leaves_the_release_pending_and_the_next_sync_finishes_it() {
    let Some(site) = installed_site(&[]).await else {
        return;
    };
    let installed = site.pvc_uids().await;
    // A helm held up inside the upgrade: here told to wait on a pod the
    // node keeps unready (Plimsoll's upgrades do not wait; a chart's hook
    // or a slow API server holds helm up the same way).
    let dir = tempfile::tempdir().unwrap();
    let held = dir.path().join("helm");
    std::fs::write(
        &held,
        format!(
            "#!/bin/sh\nif [ \"$1\" = upgrade ]; then shift; exec {0} upgrade --wait \"$@\"; fi\nexec {0} \"$@\"\n",
            site.helm()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&held, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_plimsoll"))
        .current_dir(site.repo.path())
        .args(["sync", "--yes", "--set", "segment=l", "--helm-timeout", "300"])
        .args(["--kubeconfig", &site.kubeconfig()])
        .arg("--helm")
        .arg(&held)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Once the StatefulSet is orphan-deleted, a pod of it that the node
    // keeps unready: the upgrade that re-creates it waits.
    site.wait_for_step("recreate-stateful-set/mariadb-galera").await;
    site.cluster
        .node
        .behaviour
        .lock()
        .unwrap()
        .keep_unready
        .insert("mariadb-galera-2".to_string());
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(site.client(), NS);
    pods.delete("mariadb-galera-2", &Default::default())
        .await
        .unwrap();
    let mut pending = (0, String::new());
    for _ in 0..600 {
        pending = newest_status(&site.client(), "thingpark-data").await;
        if pending.1 == "pending-upgrade" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(pending, (2, "pending-upgrade".to_string()));
    // helm is waiting on the unready pod: the sync dies with it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(child.try_wait().unwrap().is_none(), "still waiting");
    support::kill_tree(&mut child);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        newest_status(&site.client(), "thingpark-data").await,
        (2, "pending-upgrade".to_string()),
        "left pending: no helm ended it"
    );
    let o = Command::new(site.helm())
        .args(["upgrade", "-n", NS, "thingpark-data", "--reuse-values"])
        .arg(root().join("fixtures/charts/test-data-1.0.0"))
        .output()
        .unwrap();
    assert!(
        !o.status.success() && String::from_utf8_lossy(&o.stderr).contains("in progress"),
        "helm itself refuses: {}",
        text(&o)
    );

    site.cluster
        .node
        .behaviour
        .lock()
        .unwrap()
        .keep_unready
        .clear();
    let o = site.sync("l", &[], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("release thingpark-data: revision 2 was left pending-upgrade")
            && err.contains("marked failed, so that the upgrade can run"),
        "{}",
        text(&o)
    );
    assert_eq!(
        newest_status(&site.client(), "thingpark-data").await,
        (3, "deployed".to_string())
    );
    // Revision 2 as Helm stores it: failed, saying why, the rest as it was.
    let secrets: Api<Secret> = Api::namespaced(site.client(), NS);
    let field = secrets
        .get("sh.helm.release.v1.thingpark-data.v2")
        .await
        .unwrap()
        .data
        .unwrap()["release"]
        .0
        .clone();
    let gz = plimsoll_syncer::helm_release::base64_decode(&field).unwrap();
    let mut json = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut json).unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["info"]["status"], "failed");
    assert_eq!(
        v["info"]["description"],
        "Marked failed by Plimsoll: the helm that began this revision did not finish"
    );
    assert_eq!(v["version"], 2);
    let sts: Api<StatefulSet> = Api::namespaced(site.client(), NS);
    assert!(sts.get_opt("mariadb-galera").await.unwrap().is_some());
    let after = site.pvc_uids().await;
    for (name, (uid, _)) in &installed {
        assert_eq!(&after[name].0, uid, "PVC {name} kept");
    }
    let o = site.plimsoll(&["plan", "--set", "segment=l"], &[]);
    assert_eq!(o.status.code(), Some(0), "in sync: {}", text(&o));
}
}

on_both_versions! {
async fn a_stalled_resize_times_out_and_leaves_the_application_stack_alone() {
    let Some(site) = installed_site(&["data-mongo-replicaset-0"]).await else {
        return;
    };
    let o = site.sync("l", &["--expansion-timeout", "3"], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        err.contains("stopped at step thingpark-data/")
            && err.contains("PVC data-mongo-replicaset-0 did not reach 45Gi within 3s"),
        "{}",
        text(&o)
    );
    assert_eq!(
        site.release_revision("thingpark-data").await,
        1,
        "not upgraded"
    );
    assert_eq!(
        site.release_revision("thingpark-enterprise").await,
        1,
        "untouched"
    );
    assert_eq!(
        site.pvc_uids().await["data-lrc-0"].1,
        "10Gi",
        "application PVCs untouched"
    );
    let j = site.journal().await;
    assert_eq!(j["status"], "failed");
    assert!(j["message"].contains("data-mongo-replicaset-0"), "{j:?}");

    // While a sync waits, a second syncer is turned away by the lease.
    let first = site.spawn_sync(&["--set", "segment=l", "--expansion-timeout", "30"]);
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(site.client(), "plimsoll");
    for _ in 0..100 {
        let held = leases
            .get_opt("plimsoll-sync-example")
            .await
            .unwrap()
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity)
            .is_some_and(|h| h.ends_with(&format!("-{}", first.id())));
        if held {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let second = site.sync("l", &[], &[]);
    assert_eq!(second.status.code(), Some(1), "{}", text(&second));
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("stack example is being synced by"),
        "{}",
        text(&second)
    );
    // The resize completes; the first syncer finishes the job.
    site.storage[0]
        .behaviour
        .lock()
        .unwrap()
        .stall_resize
        .clear();
    let o = first.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(site.release_revision("thingpark-enterprise").await, 2);
}
}

on_both_versions! {
async fn helm_failing_stops_the_sync_before_the_application_stack() {
    let Some(site) = installed_site(&[]).await else {
        return;
    };
    // A helm that renders but cannot upgrade.
    let failing = site.repo.path().join("failing-helm");
    std::fs::write(
        &failing,
        format!(
            "#!/bin/sh\nif [ \"$1\" = upgrade ]; then echo 'Error: UPGRADE FAILED: the stand-in refuses' >&2; exit 1; fi\nexec {} \"$@\"\n",
            site.helm()
        ),
    )
    .unwrap();
    Command::new("chmod")
        .arg("+x")
        .arg(&failing)
        .status()
        .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_plimsoll"));
    let o = cmd
        .current_dir(site.repo.path())
        .args([
            "sync",
            "--yes",
            "--set",
            "segment=l",
            "--kubeconfig",
            &site.kubeconfig(),
        ])
        .arg("--helm")
        .arg(&failing)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("stopped at step thingpark-data/")
            && err.contains("UPGRADE FAILED: the stand-in refuses"),
        "{}",
        text(&o)
    );
    // What ran before the failure is reported (the report survives the
    // failure: it used to be dropped on that path).
    assert!(
        err.contains("expand-pvc") && err.contains("before the failure"),
        "{}",
        text(&o)
    );
    assert_eq!(
        site.release_revision("thingpark-enterprise").await,
        1,
        "untouched"
    );
    // The StatefulSets were orphan-deleted before the upgrade failed; the
    // next sync (with a working helm) resumes and re-creates them.
    let o = site.sync("l", &[], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let sts: Api<StatefulSet> = Api::namespaced(site.client(), NS);
    assert!(sts.get_opt("mariadb-galera").await.unwrap().is_some());
    assert_eq!(site.release_revision("thingpark-enterprise").await, 2);
}
}

on_both_versions! {
/// A pod that crash-loops for a while during the upgrade (as a stateful
/// platform's pods do while their peers come up) is waited for until it is
/// ready or the timeout passes, with the helm binary: Helm 4's `--wait`
/// (its `watcher`), which reads the StatefulSet of a crash-looping pod as
/// Failed and gives up at once, is not used; Plimsoll's own wait is.
async fn a_pod_crash_looping_for_a_while_during_the_upgrade_is_waited_for() {
    let Some(site) = site(StorageBehaviour::default(), false).await else {
        return;
    };
    let sync = |segment: &str| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_plimsoll"));
        cmd.current_dir(site.repo.path())
            .args(["sync", "--yes", "--set", &format!("segment={segment}")])
            .args(["--helm-timeout", "120", "--kubeconfig", &site.kubeconfig()])
            .arg("--helm")
            .arg(&site.cluster.cp.helm_cli)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        cmd.spawn().unwrap()
    };
    let o = sync("m").wait_with_output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    site.cluster
        .node
        .behaviour
        .lock()
        .unwrap()
        .crash_loop
        .insert("lrc-0".to_string());
    let mut child = sync("l");
    // helm re-creates the StatefulSet and waits on it while its lrc-0
    // crash-loops.
    site.wait_for_step("recreate-stateful-set/lrc").await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "the sync still waits on the crash-looping pod: {}",
        text(&child.wait_with_output().unwrap())
    );
    site.cluster
        .node
        .behaviour
        .lock()
        .unwrap()
        .crash_loop
        .clear();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(site.release_revision("thingpark-enterprise").await, 2);
    drop(site.storage);
}
}

on_both_versions! {
async fn a_pod_that_never_becomes_ready_fails_the_sync_with_what_is_waiting() {
    let Some(site) = installed_site(&[]).await else {
        return;
    };
    site.cluster
        .node
        .behaviour
        .lock()
        .unwrap()
        .keep_unready
        .insert("lrc-1".to_string());
    // Force lrc-1 to be re-created so that the new pod stays unready.
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(site.client(), NS);
    pods.delete("lrc-1", &Default::default()).await.unwrap();
    let o = site.sync("l", &["--helm-timeout", "5", "--ready-timeout", "5"], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("stopped at step thingpark-enterprise/"),
        "{}",
        text(&o)
    );
    assert_eq!(
        site.release_revision("thingpark-data").await,
        2,
        "data stack done first"
    );
}
}

/// A minimal HTTP/1.1 client for the daemon's endpoint.
fn http(addr: &str, method: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return (0, String::new());
    };
    let _ = write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
    );
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, out)
}

fn metric(addr: &str, prefix: &str) -> Option<String> {
    let (_, body) = http(addr, "GET", "/metrics");
    body.lines()
        .find(|l| l.starts_with(prefix))
        .map(str::to_string)
}

/// A site whose repository is a git branch `main` with one commit
/// (segment m), and a daemon following it that has synced that commit.
async fn followed_site(extra: &[&str]) -> Option<(Site, git2::Repository, DaemonProcess)> {
    let site = site(StorageBehaviour::default(), false).await?;
    let git = git2::Repository::init(site.repo.path()).unwrap();
    git.set_head("refs/heads/main").unwrap();
    let first = commit_all(&git, "segment m");
    let d = DaemonProcess::start(&site, extra);
    d.wait_for("the first commit to be synced", |d| {
        metric(&d.addr, "plimsoll_synced_revision_info").is_some_and(|l| l.contains(&first))
    })
    .await;
    Some((site, git, d))
}

struct DaemonProcess {
    child: std::process::Child,
    log: PathBuf,
    addr: String,
}

impl DaemonProcess {
    fn start(site: &Site, extra: &[&str]) -> DaemonProcess {
        DaemonProcess::start_with_env(site, extra, &[])
    }

    fn start_with_env(site: &Site, extra: &[&str], env: &[(&str, &str)]) -> DaemonProcess {
        let addr = support::free_addr();
        let port = addr.rsplit(':').next().unwrap_or_default();
        let log = site.repo.path().join(format!(".git/daemon-{port}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_plimsoll"))
            .current_dir(site.repo.path())
            .args(["daemon", "--branch", "main", "--listen", &addr])
            .args(if extra.contains(&"--interval") {
                &[][..]
            } else {
                &["--interval", "300"][..]
            })
            .args(["--kubeconfig", &site.kubeconfig(), "--helm", &site.helm()])
            .args(extra)
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        DaemonProcess { child, log, addr }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn wait_for(&self, what: &str, mut ok: impl FnMut(&DaemonProcess) -> bool) {
        for _ in 0..600 {
            if ok(self) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("daemon: timed out waiting for {what}; log:\n{}", self.log());
    }

    fn terminate(mut self) -> std::process::ExitStatus {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        self.child.wait().unwrap()
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

on_both_versions! {
/// A replica whose lease went unconfirmed (the API server gone for longer
/// than two thirds of the lease) shows the stack as unconfirmed meanwhile,
/// and what it showed before once confirmed again: here a rejected commit,
/// which no later pass reports afresh (it stayed "unconfirmed" for good).
async fn a_stack_shows_its_state_again_once_its_lease_is_confirmed() {
    let page = support::free_addr();
    let Some((mut site, git, d)) = followed_site(&[
        "--interval",
        "1",
        "--lease-duration",
        "6",
        "--status-listen",
        &page,
    ])
    .await
    else {
        return;
    };
    std::fs::write(site.repo.path().join("site/data-stack.yaml"), "not: [yaml\n").unwrap();
    commit_all(&git, "not YAML");
    d.wait_for("the commit to be rejected", |d| {
        d.log().contains("the commit cannot be used")
    })
    .await;
    let status = |addr: &str| http(addr, "GET", "/status.json").1;
    assert!(status(&page).contains("\"rejected\""), "{}", status(&page));
    let addr = page.clone();
    let watched = tokio::task::spawn_blocking(move || {
        for _ in 0..300 {
            if status(&addr).contains("\"unconfirmed\"") {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    });
    site.cluster
        .cp
        .restart_apiserver(Duration::from_secs(8))
        .await
        .unwrap();
    assert!(
        watched.await.unwrap(),
        "unconfirmed while the API server was gone: {}",
        d.log()
    );
    let mut now = String::new();
    for _ in 0..300 {
        now = status(&page);
        if now.contains("\"rejected\"") && !now.contains("\"unconfirmed\"") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        now.contains("\"rejected\"") && !now.contains("\"unconfirmed\""),
        "the rejected commit shown again: {now}\n{}",
        d.log()
    );
}
}

on_both_versions! {
async fn the_daemon_syncs_new_commits_reports_drift_and_heals_it() {
    let Some((site, git, d)) = followed_site(&["--log-format", "json"]).await else {
        return;
    };
    assert_eq!(http(&d.addr, "GET", "/readyz").0, 200);
    assert_eq!(http(&d.addr, "GET", "/healthz").0, 200);
    assert!(
        d.log()
            .lines()
            .any(|l| l.starts_with('{') && l.contains("\"level\":\"INFO\"")),
        "JSON logs: {}",
        d.log()
    );

    // A commit growing the profile: picked up through notify (the interval
    // is 300 s), then synced.
    let l = std::fs::read_to_string(site.repo.path().join("profiles/l.yaml")).unwrap();
    std::fs::write(site.repo.path().join("profiles/m.yaml"), l).unwrap();
    let committed = std::time::Instant::now();
    let grown = commit_all(&git, "grow m to l sizes");
    d.wait_for("the new commit to be noticed", |d| {
        d.log().contains(&format!("\"revision\":\"{grown}\""))
    })
    .await;
    let noticed = committed.elapsed();
    eprintln!("new commit noticed after {noticed:?}");
    assert!(
        noticed < Duration::from_secs(2),
        "the daemon noticed the commit after {noticed:?}"
    );
    d.wait_for("the new commit to be synced", |d| {
        metric(&d.addr, "plimsoll_synced_revision_info").is_some_and(|l| l.contains(&grown))
    })
    .await;
    assert_eq!(site.pvc_uids().await["data-mariadb-galera-0"].1, "15Gi");
    assert!(metric(
        &d.addr,
        "plimsoll_steps_executed_total{stack=\"example\",kind=\"expand-pvc\"}"
    )
    .is_some());
    // Each executor line is logged once (it used to be logged twice: by
    // the executor and by the daemon's progress callback).
    let steps: Vec<String> = d
        .log()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["message"].as_str().map(str::to_string))
        .filter(|m| m.starts_with('['))
        .collect();
    assert!(steps.len() >= 2, "{}", d.log());
    for pair in steps.windows(2) {
        assert_ne!(pair[0], pair[1], "logged twice: {}", d.log());
    }

    // Footprint, printed for the record (measured, not asserted): an idle
    // reconcile pass (nothing to do) and the daemon's resident memory.
    assert_eq!(http(&d.addr, "POST", "/hook").0, 202);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss = std::fs::read_to_string(format!("/proc/{}/status", d.child.id()))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .map(str::to_string)
        .unwrap_or_default();
    eprintln!(
        "daemon idle {rss}; last reconcile pass: {}",
        metric(&d.addr, "plimsoll_reconcile_cpu_seconds").unwrap_or_default()
    );

    // A hand edit of the application release's values: drift, reported.
    let hand_edit = || {
        let o = Command::new(site.helm())
            .current_dir(site.repo.path())
            .args([
                "upgrade",
                "thingpark-enterprise",
                "charts/test-app",
                "-n",
                NS,
            ])
            .args(["--reuse-values", "--set", "twa.replicaCount=3"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
    };
    hand_edit();
    assert_eq!(http(&d.addr, "POST", "/hook").0, 202);
    d.wait_for("drift to be reported", |d| {
        metric(
            &d.addr,
            "plimsoll_drift{stack=\"example\",release=\"thingpark-enterprise\"}",
        )
        .is_some_and(|l| !l.ends_with(" 0"))
    })
    .await;
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(site.client(), NS);
    // The gauge is set before the log line and the Event are written.
    let mut drift_events = 0;
    for _ in 0..100 {
        drift_events = events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("Drift"))
            .count();
        if drift_events > 0 && d.log().contains("drifted from") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(d.log().contains("drifted from"), "{}", d.log());
    assert!(drift_events >= 1, "a Drift event is recorded");
    assert_eq!(
        site.release_revision("thingpark-enterprise").await,
        3,
        "not healed without --self-heal"
    );
    let status = d.terminate();
    assert!(status.success(), "SIGTERM is a clean stop: {status:?}");

    // With --self-heal: the next hand edit is synced back.
    let d = DaemonProcess::start(&site, &["--self-heal"]);
    d.wait_for("the restarted daemon to be ready", |d| {
        http(&d.addr, "GET", "/readyz").0 == 200
    })
    .await;
    let healed_once = site.release_revision("thingpark-enterprise").await;
    hand_edit();
    let edited = site.release_revision("thingpark-enterprise").await;
    assert_eq!(edited, healed_once + 1);
    assert_eq!(http(&d.addr, "POST", "/hook").0, 202);
    for _ in 0..300 {
        if site.release_revision("thingpark-enterprise").await > edited {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        site.release_revision("thingpark-enterprise").await,
        edited + 1,
        "healed: {}",
        d.log()
    );
    // The revision's Secret exists while `helm upgrade --wait` still
    // waits: let the heal's sync finish before the daemon is killed.
    d.wait_for("the heal's sync to complete", |d| {
        let log = d.log();
        log.rfind("syncing (self-heal)")
            .is_some_and(|i| log[i..].contains("sync complete"))
    })
    .await;
    let o = site.plimsoll(&["plan"], &[]);
    assert_eq!(o.status.code(), Some(0), "no drift left: {}", text(&o));

    // A Deployment edited by hand (image and replicas, as `kubectl edit`
    // does), the release's values unchanged: drift of a live object,
    // planned as an upgrade that restores it, and healed.
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(site.client(), NS);
    let chart_replicas = deployments.get("twa").await.unwrap().spec.unwrap().replicas;
    deployments
        .patch(
            "twa",
            &kube::api::PatchParams {
                field_manager: Some("kubectl-edit".into()),
                ..Default::default()
            },
            &kube::api::Patch::Strategic(json!({"spec": {"replicas": 5, "template": {"spec": {
                "containers": [{"name": "main", "image": "registry.invalid/twa:hand-edited"}]}}}})),
        )
        .await
        .unwrap();
    let o = site.plimsoll(&["plan"], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    for line in [
        "restores 1 drifted object(s)".to_string(),
        format!("drift: deployment/twa spec.replicas: live 5, chart {}", chart_replicas.unwrap()),
        "drift: deployment/twa spec.template.spec.containers[main].image: live registry.invalid/twa:hand-edited, chart registry.invalid/twa:1.0.0".to_string(),
    ] {
        assert!(out.contains(&line), "{line:?} in {}", text(&o));
    }
    let before = site.release_revision("thingpark-enterprise").await;
    assert_eq!(http(&d.addr, "POST", "/hook").0, 202);
    let mut live = None;
    for _ in 0..300 {
        let spec = deployments.get("twa").await.unwrap().spec.unwrap();
        let image = spec.template.spec.unwrap().containers[0].image.clone();
        live = Some((spec.replicas, image.clone()));
        if spec.replicas == chart_replicas && image.as_deref() == Some("registry.invalid/twa:1.0.0") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        live,
        Some((chart_replicas, Some("registry.invalid/twa:1.0.0".to_string()))),
        "restored: {}",
        d.log()
    );
    assert!(d.log().contains("deployment/twa spec.replicas: live 5"), "{}", d.log());
    assert_eq!(site.release_revision("thingpark-enterprise").await, before + 1);
    d.wait_for("the heal's sync to complete", |d| {
        let log = d.log();
        log.rfind("syncing (self-heal)")
            .is_some_and(|i| log[i..].contains("sync complete") && log[i..].contains("restores"))
    })
    .await;
    let o = site.plimsoll(&["plan"], &[]);
    assert_eq!(o.status.code(), Some(0), "no drift left: {}", text(&o));
    drop(d);

    // `plimsoll sync` in a git repository syncs what is committed (HEAD),
    // not an uncommitted edit.
    std::fs::write(site.repo.path().join("profiles/m.yaml"), "not: [valid\n").unwrap();
    let o = site.sync("m", &[], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(&format!("syncing HEAD (commit {grown})")),
        "{}",
        text(&o)
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("No changes"),
        "{}",
        text(&o)
    );
}
}

on_both_versions! {
/// A sync cut short, then a commit that cannot be synced (not YAML, or a
/// shrink the plan refuses): the daemon still finishes the interrupted
/// sync of the earlier, accepted commit — the cluster is left at the last
/// commit accepted, its journal complete, not half way — and keeps
/// reporting why the branch's commit is not synced.
async fn an_interrupted_sync_is_finished_when_the_next_commit_cannot_be_synced() {
    let Some((site, git, d)) = followed_site(&[]).await else {
        return;
    };
    d.terminate();

    // Grow (m := l); the daemon dies right after the first PVC patch.
    let l = std::fs::read_to_string(site.repo.path().join("profiles/l.yaml")).unwrap();
    std::fs::write(site.repo.path().join("profiles/m.yaml"), &l).unwrap();
    let grow = commit_all(&git, "grow");
    let mut d = DaemonProcess::start_with_env(
        &site,
        &[],
        &[("PLIMSOLL_FAULT_ABORT_AFTER", "expand-pvc")],
    );
    let mut exited = None;
    for _ in 0..600 {
        exited = d.child.try_wait().unwrap();
        if exited.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(exited.is_some(), "aborted after the first expand: {}", d.log());
    let j = site.journal().await;
    assert_eq!(j["status"], "running", "{j:?}");
    assert_eq!(j["revision"], grow);
    assert!(!j["completed"].contains("helm-upgrade"), "{j:?}");

    // The next commit is not YAML.
    std::fs::write(site.repo.path().join("site/data-stack.yaml"), "a: [unclosed\n").unwrap();
    let bad = commit_all(&git, "not YAML");
    let d = DaemonProcess::start(&site, &[]);
    d.wait_for("the interrupted sync to be finished", |d| {
        metric(&d.addr, "plimsoll_synced_revision_info").is_some_and(|l| l.contains(&grow))
    })
    .await;
    let log = d.log();
    assert!(log.contains("the commit cannot be used"), "{log}");
    assert!(log.contains("finishing the interrupted sync"), "{log}");
    let j = site.journal().await;
    assert_eq!((j["status"].as_str(), j["revision"].as_str()), ("succeeded", grow.as_str()), "{j:?}");
    for (name, (_, size)) in site.pvc_uids().await {
        if name.starts_with("data-mariadb-galera") {
            assert_eq!(size, "15Gi", "{name}");
        }
    }
    let sts: Api<StatefulSet> = Api::namespaced(site.client(), NS);
    assert!(sts.get_opt("mariadb-galera").await.unwrap().is_some(), "re-created");
    // The branch's commit is still reported as unusable.
    let (code, body) = http(&d.addr, "GET", "/readyz");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains(&bad[..12]), "{body}");
    d.terminate();
}
}

on_both_versions! {
/// A commit whose content cannot be used (an alias bomb in a layer, a
/// release name that would be a helm flag) is reported once (log, metric,
/// Event, /readyz), not retried until the branch moves; the daemon stays
/// up and syncs the next good commit.
async fn the_daemon_survives_hostile_commits_and_waits_for_the_branch_to_move() {
    let Some((site, git, mut d)) = followed_site(&[]).await else {
        return;
    };

    // An alias bomb within the size limit: one 1 MiB string, 1,000 uses.
    let good_site = std::fs::read_to_string(site.repo.path().join("site/data-stack.yaml")).unwrap();
    let mut bomb = format!("{good_site}\nbig: &big {}\nuses:\n", "x".repeat(1 << 20));
    for _ in 0..1000 {
        bomb.push_str("  - *big\n");
    }
    std::fs::write(site.repo.path().join("site/data-stack.yaml"), &bomb).unwrap();
    let bad = commit_all(&git, "alias bomb");
    d.wait_for("the bomb to be rejected", |d| {
        d.log().contains("the commit cannot be used")
    })
    .await;
    let (code, body) = http(&d.addr, "GET", "/readyz");
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains(&bad[..12]) && body.contains("expanding aliases exceeds"),
        "{body}"
    );
    assert!(
        body.contains("site/data-stack.yaml:"),
        "names the file: {body}"
    );
    let events: Api<k8s_openapi::api::core::v1::Event> =
        Api::namespaced(site.client(), "plimsoll");
    let rejected = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("CommitRejected"))
        .count();
    assert_eq!(rejected, 1, "one Warning Event");
    // More triggers: the same commit is not loaded again.
    for _ in 0..3 {
        assert_eq!(http(&d.addr, "POST", "/hook").0, 202);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let log = d.log();
    assert_eq!(
        log.matches("the commit cannot be used").count(),
        1,
        "not retried: {log}"
    );
    assert!(d.child.try_wait().unwrap().is_none(), "still running");

    // The branch moves to another hostile commit: a release name that
    // would reach helm as a flag.
    std::fs::write(site.repo.path().join("site/data-stack.yaml"), &good_site).unwrap();
    let stack = std::fs::read_to_string(site.repo.path().join("plimsoll.yaml")).unwrap();
    std::fs::write(
        site.repo.path().join("plimsoll.yaml"),
        stack.replace("name: thingpark-enterprise", "name: --post-renderer=./evil.sh"),
    )
    .unwrap();
    let flag = commit_all(&git, "a release name that is a flag");
    d.wait_for("the second rejection", |d| {
        d.log().matches("the commit cannot be used").count() == 2
    })
    .await;
    let (code, body) = http(&d.addr, "GET", "/readyz");
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains(&flag[..12]) && body.contains("plimsoll.yaml@") && body.contains("release name"),
        "names the file at the commit, the position and the problem: {body}"
    );

    // A good commit: synced, ready again.
    std::fs::write(site.repo.path().join("plimsoll.yaml"), &stack).unwrap();
    let l = std::fs::read_to_string(site.repo.path().join("profiles/l.yaml")).unwrap();
    std::fs::write(site.repo.path().join("profiles/m.yaml"), l).unwrap();
    let good = commit_all(&git, "grow");
    d.wait_for("the good commit to be synced", |d| {
        metric(&d.addr, "plimsoll_synced_revision_info").is_some_and(|l| l.contains(&good))
    })
    .await;
    assert_eq!(http(&d.addr, "GET", "/readyz").0, 200);
    assert_eq!(site.pvc_uids().await["data-mariadb-galera-0"].1, "15Gi");
}
}

on_both_versions! {
async fn the_daemon_manifest_is_accepted_by_the_api_server() {
    let Some(site) = site(StorageBehaviour::default(), false).await else {
        return;
    };
    let client = site.client();
    create_operator_resource(&client).await;
    let kinds = apply_manifest(&client).await;
    assert_eq!(
        kinds,
        [
            "Namespace",
            "ServiceAccount",
            "Role",
            "RoleBinding",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
            "Deployment",
            "Service"
        ]
    );
}
}

/// Points the data release at a copy of the test-data chart with `version`.
fn use_data_chart(site: &Site, from: &str, version: &str, catalog: &str) {
    let dir = site.repo.path().join("charts/test-data");
    std::fs::remove_dir_all(&dir).unwrap();
    copy_dir(&root().join("fixtures/charts").join(from), &dir);
    support::set_chart_version(&dir, version);
    let stack = std::fs::read_to_string(site.repo.path().join("plimsoll.yaml")).unwrap();
    let mut out = String::new();
    let mut in_data = false;
    for l in stack.lines() {
        if l.starts_with("  - name: ") {
            in_data = l.ends_with("thingpark-data");
        }
        if in_data && l.starts_with("    version: ") {
            out.push_str(&format!("    version: {version}\n"));
        } else if !l.starts_with("catalog:") && !l.starts_with("  test-data:") {
            out.push_str(l);
            out.push('\n');
        }
    }
    out.push_str(catalog);
    std::fs::write(site.repo.path().join("plimsoll.yaml"), out).unwrap();
}

on_both_versions! {
async fn downgrades_and_skipped_upgrade_paths_are_refused_before_any_change() {
    let Some(site) = site(StorageBehaviour::default(), false).await else {
        return;
    };
    let catalog = "catalog:\n  test-data: [1.0.0, 1.1.0, 1.1.1, 2.0.0]\n";
    use_data_chart(&site, "test-data-1.1.0", "1.1.0", catalog);
    let o = site.sync("m", &[], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let journal_before = site.journal().await;
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(site.client(), "plimsoll");
    let lease_version = || async {
        leases
            .get("plimsoll-sync-example")
            .await
            .unwrap()
            .metadata
            .resource_version
    };
    let lease_before = lease_version().await;

    use_data_chart(&site, "test-data-1.0.0", "1.0.0", catalog);
    let o = site.plimsoll(&["plan"], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .contains("REFUSED: thingpark-data: chart would be downgraded from 1.1.0 to 1.0.0"),
        "{}",
        text(&o)
    );
    let o = site.sync("m", &[], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("the plan is refused; nothing was changed"));

    use_data_chart(&site, "test-data-1.1.0", "2.0.0", catalog);
    let o = site.plimsoll(&["plan", "--format", "markdown"], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let md = String::from_utf8_lossy(&o.stdout);
    assert!(
        md.starts_with("**Plimsoll refuses this change**")
            && md.contains("thingpark-data: upgrading 1.1.0 -> 2.0.0 skips the release path; upgrade to 1.1.1 first"),
        "{}",
        text(&o)
    );
    let o = site.sync("m", &[], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));

    assert_eq!(
        site.release_revision("thingpark-data").await,
        1,
        "nothing was changed"
    );
    assert_eq!(site.journal().await, journal_before, "no sync started");
    assert_eq!(
        lease_version().await,
        lease_before,
        "a refused sync writes nothing, not even the lease"
    );

    // Following the path: 1.1.1 is allowed.
    use_data_chart(&site, "test-data-1.1.0", "1.1.1", catalog);
    let o = site.sync("m", &[], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(site.release_revision("thingpark-data").await, 2);
}
}

on_both_versions! {
async fn the_api_server_restarting_mid_sync_does_not_stop_it() {
    let Some(mut site) = installed_site(&["data-mariadb-galera-2"]).await else {
        return;
    };
    let child = site.spawn_sync(&["--set", "segment=l", "--expansion-timeout", "120"]);
    // Wait until the sync waits on the stalled resize, then restart the API
    // server under it.
    site.wait_for_step("expand-pvc/data-mongo-replicaset-2")
        .await;
    site.cluster
        .cp
        .restart_apiserver(Duration::from_secs(3))
        .await
        .unwrap();
    site.storage[0]
        .behaviour
        .lock()
        .unwrap()
        .stall_resize
        .clear();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("Sync complete"),
        "{}",
        text(&o)
    );
    assert_eq!(site.release_revision("thingpark-enterprise").await, 2);
    let o = site.plimsoll(&["plan", "--set", "segment=l"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}
}

on_both_versions! {
async fn the_manifest_rbac_is_enough_to_sync_as_the_service_account() {
    let Some(site) = site(StorageBehaviour::default(), false).await else {
        return;
    };
    let client = site.client();
    create_operator_resource(&client).await;
    apply_manifest(&client).await;
    // A token for the service account from the TokenRequest API (v1.20
    // and v1.32 alike; v1.24+ no longer creates token Secrets by itself).
    let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> =
        Api::namespaced(client.clone(), "plimsoll");
    let request: k8s_openapi::api::authentication::v1::TokenRequest =
        serde_json::from_value(json!({"spec": {"audiences": [], "expirationSeconds": 3600}})).unwrap();
    let mut token = None;
    for _ in 0..150 {
        token = accounts
            .create_token_request("plimsoll", &PostParams::default(), &request)
            .await
            .ok()
            .and_then(|t| t.status)
            .map(|s| s.token);
        if token.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let token = token.expect("a service account token");
    let admin = std::fs::read_to_string(&site.cluster.cp.kubeconfig).unwrap();
    let admin_token = admin
        .lines()
        .find_map(|l| l.trim().strip_prefix("token: "))
        .unwrap()
        .to_string();
    let sa_kubeconfig = site.repo.path().join("sa-kubeconfig");
    std::fs::write(&sa_kubeconfig, admin.replace(&admin_token, &token)).unwrap();
    let env = Env::require().unwrap();
    let sa_helm = plimsoll_testenv::write_helm_command(
        &env,
        &site.repo.path().join("sa-helm"),
        Some(&sa_kubeconfig),
    )
    .unwrap();
    let as_sa = |segment: &str| {
        Command::new(env!("CARGO_BIN_EXE_plimsoll"))
            .current_dir(site.repo.path())
            .args(["sync", "--yes", "--set", &format!("segment={segment}")])
            .arg("--kubeconfig")
            .arg(&sa_kubeconfig)
            .arg("--helm")
            .arg(&sa_helm)
            .output()
            .unwrap()
    };
    // Install at m, then scale to l, with nothing but the manifest's rights.
    let o = as_sa("m");
    assert!(o.status.success(), "{}", text(&o));
    let o = as_sa("l");
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(site.pvc_uids().await["data-mariadb-galera-0"].1, "15Gi");
    // And the account cannot do what Plimsoll never does.
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(
        kube::Client::try_from(
            kube::Config::from_custom_kubeconfig(
                kube::config::Kubeconfig::read_from(&sa_kubeconfig).unwrap(),
                &Default::default(),
            )
            .await
            .unwrap(),
        )
        .unwrap(),
        NS,
    );
    let err = pvcs
        .delete("data-mariadb-galera-0", &Default::default())
        .await
        .expect_err("deleting a PVC is forbidden");
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 403),
        "{err:?}"
    );
}
}

on_both_versions! {
/// The journal is not a command channel: a step added by hand to an
/// interrupted sync's journal is never executed (its digest no longer
/// matches: a fresh plan replaces it), and a damaged journal is replaced by
/// a fresh plan instead of failing every sync.
async fn a_hand_edited_or_damaged_journal_is_replaced_by_a_fresh_plan() {
    let Some(site) = installed_site(&[]).await else {
        return;
    };
    let o = site.sync("l", &[], &[("PLIMSOLL_FAULT_ABORT_AFTER", "expand-pvc")]);
    assert_eq!(o.status.code(), None, "killed: {}", text(&o));
    let cms: Api<ConfigMap> = Api::namespaced(site.client(), "plimsoll");
    let mut cm = cms.get("plimsoll-journal-example").await.unwrap();
    let data = cm.data.as_mut().unwrap();
    assert_eq!(data["status"], "running");
    // A resize nobody planned, as the next step.
    let mut steps: Vec<serde_json::Value> = serde_json::from_str(&data["steps"]).unwrap();
    steps.insert(
        0,
        serde_json::json!({
            "id": "thingpark-data/0/expand-pvc/data-mariadb-galera-0",
            "release": "thingpark-data",
            "step": {"kind": "expand-pvc", "namespace": NS, "pvc": "data-mariadb-galera-0",
                     "from": "15Gi", "to": "900Gi", "storage_class": "thingpark-csi-gp3-xfs"}
        }),
    );
    data.insert("steps".into(), serde_json::to_string_pretty(&steps).unwrap());
    cms.replace("plimsoll-journal-example", &Default::default(), &cm)
        .await
        .unwrap();

    let o = site.sync("l", &[], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("does not match its digest") && err.contains("a fresh plan replaces it"),
        "{}",
        text(&o)
    );
    assert_eq!(
        site.pvc_uids().await["data-mariadb-galera-0"].1,
        "15Gi",
        "the hand-written step did not run"
    );
    assert_eq!(site.release_revision("thingpark-enterprise").await, 2);

    // A damaged journal (steps that do not parse): reported and replaced.
    let mut cm = cms.get("plimsoll-journal-example").await.unwrap();
    let data = cm.data.as_mut().unwrap();
    data.insert("steps".into(), "{not json".into());
    data.insert("status".into(), "running".into());
    cms.replace("plimsoll-journal-example", &Default::default(), &cm)
        .await
        .unwrap();
    let o = site.sync("m", &[], &[]);
    // m after l: a shrink, refused; the damaged journal does not fail it.
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("REFUSED"),
        "refused for the plan, not the journal: {}",
        text(&o)
    );
    let o = site.sync("l", &[], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("No changes"),
        "{}",
        text(&o)
    );
}
}

on_both_versions! {
async fn sigterm_stops_at_a_safe_boundary_and_the_next_sync_finishes() {
    let Some(site) = installed_site(&["data-lrc-1"]).await else {
        return;
    };
    let child = site.spawn_sync(&["--set", "segment=l"]);
    // The application stack waits on its stalled resize: stop there.
    site.wait_for_step("thingpark-enterprise/2/expand-pvc/data-lrc-1")
        .await;
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("Stopped before thingpark-enterprise/"),
        "{}",
        text(&o)
    );
    let j = site.journal().await;
    assert_eq!(j["status"], "running", "{j:?}");
    assert_eq!(
        site.release_revision("thingpark-data").await,
        2,
        "the data stack is done"
    );
    let sts: Api<StatefulSet> = Api::namespaced(site.client(), NS);
    assert!(
        sts.get_opt("lrc").await.unwrap().is_some(),
        "not stopped after an orphan delete"
    );

    site.storage[1]
        .behaviour
        .lock()
        .unwrap()
        .stall_resize
        .clear();
    let o = site.sync("l", &[], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("Sync complete (resumed)"),
        "{}",
        text(&o)
    );
    assert_eq!(site.release_revision("thingpark-enterprise").await, 2);
}
}

on_both_versions! {
/// One writer for real: a syncer paused (SIGSTOP) during a wait for
/// longer than its lease is taken over; continued, it writes nothing (not
/// even the journal) and exits saying so.
async fn a_syncer_paused_past_its_lease_writes_nothing_after_another_took_over() {
    let Some(site) = installed_site(&["data-mongo-replicaset-0"]).await else {
        return;
    };
    let a = site.spawn_sync(&[
        "--set",
        "segment=l",
        "--expansion-timeout",
        "300",
        "--lease-duration",
        "3",
    ]);
    site.wait_for_step("expand-pvc/data-mongo-replicaset-0").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let signal = |sig: &str| {
        let ok = Command::new("kill")
            .args([sig, &a.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    };
    signal("-STOP");
    site.storage[0]
        .behaviour
        .lock()
        .unwrap()
        .stall_resize
        .clear();
    let b = site.sync("l", &["--wait-for-lease", "60", "--lease-duration", "3"], &[]);
    assert!(b.status.success(), "{}", text(&b));
    let cms: Api<ConfigMap> = Api::namespaced(site.client(), "plimsoll");
    let journal_before = cms.get("plimsoll-journal-example").await.unwrap();
    assert_eq!(journal_before.data.as_ref().unwrap()["status"], "succeeded");
    let revisions = (
        site.release_revision("thingpark-data").await,
        site.release_revision("thingpark-enterprise").await,
    );
    assert_eq!(revisions, (2, 2), "B finished the scale-up");
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(site.client(), "plimsoll");
    let lease_before = leases.get("plimsoll-sync-example").await.unwrap();

    signal("-CONT");
    let o = a.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("lease was lost") || err.contains("lease is not this syncer's"),
        "A says why it stopped: {}",
        text(&o)
    );
    let journal_after = cms.get("plimsoll-journal-example").await.unwrap();
    assert_eq!(
        journal_after.metadata.resource_version, journal_before.metadata.resource_version,
        "A wrote the journal after losing the lease: {:?}",
        journal_after.data
    );
    assert_eq!(
        (
            site.release_revision("thingpark-data").await,
            site.release_revision("thingpark-enterprise").await,
        ),
        revisions,
        "A ran helm after losing the lease"
    );
    let lease_after = leases.get("plimsoll-sync-example").await.unwrap();
    assert_eq!(
        lease_after.metadata.resource_version, lease_before.metadata.resource_version,
        "A touched the lease after losing it"
    );
}
}

on_both_versions! {
async fn a_new_commit_after_an_interrupted_sync_plans_afresh_from_the_live_state() {
    let Some(site) = installed_site(&["data-mariadb-galera-0"]).await else {
        return;
    };
    let o = site.sync("l", &[], &[("PLIMSOLL_FAULT_ABORT_AFTER", "expand-pvc")]);
    assert_eq!(o.status.code(), None, "killed: {}", text(&o));
    // Another change lands before the next sync: a new desired state.
    let site_values = site.repo.path().join("site/data-stack.yaml");
    let text_ = std::fs::read_to_string(&site_values).unwrap();
    std::fs::write(
        &site_values,
        text_.replace("name: thingpark", "name: thingpark-2"),
    )
    .unwrap();
    // Planned from the live state: a volume already requested is not
    // expanded again, but its resize (stalled here) is waited for before
    // the StatefulSet is re-created.
    let o = site.plimsoll(&["plan", "--set", "segment=l"], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let plan = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(!plan.contains("expand PVC data-mariadb-galera-0"), "{plan}");
    let wait = plan
        .find("wait until PVC data-mariadb-galera-0 has 15Gi")
        .expect("the resize in progress is waited for");
    assert!(
        wait < plan.find("delete StatefulSet mariadb-galera").unwrap(),
        "{plan}"
    );

    site.storage[0]
        .behaviour
        .lock()
        .unwrap()
        .stall_resize
        .clear();
    let o = site.sync("l", &[], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    );
    assert!(!err.contains("resuming plan"), "{}", text(&o));
    assert!(out.contains("Sync complete in"), "{}", text(&o));
    let o = site.plimsoll(&["plan", "--set", "segment=l"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}
}

/// The sync options the CLI would use, for in-process syncs.
fn sync_options(site: &Site) -> plimsoll_syncer::sync::SyncOptions {
    plimsoll_syncer::sync::SyncOptions {
        journal_namespace: "plimsoll".into(),
        strict: false,
        dry_run: false,
        settings: plimsoll_syncer::execute::Settings {
            helm: PathBuf::from(site.helm()),
            cluster: Default::default(),
            expansion_timeout: Duration::from_secs(120),
            helm_timeout: Duration::from_secs(120),
            ready_timeout: Duration::from_secs(120),
            poll: Duration::from_millis(200),
            concurrency: 4,
        },
        lease_duration: Duration::from_secs(15),
        wait_for_lease: None,
        namespaces: Vec::new(),
        saved: None,
        holder: plimsoll_syncer::sync::holder_identity(),
        tracker: None,
    }
}

on_both_versions! {
/// What a person approves is exactly what runs: the prepared plan is the
/// one executed (its steps are the journal's), and a cluster that changed
/// after the approval stops the sync before any change. In-process: the
/// runtime is a library.
async fn the_approved_plan_is_what_runs_and_a_changed_cluster_stops_the_sync() {
    use plimsoll_syncer::sync::{prepare, Preparation, SyncOutcome};
    let Some(site) = installed_site(&[]).await else {
        return;
    };
    let source = plimsoll_syncer::source::StackSource {
        repo: site.repo.path().to_path_buf(),
        stack_file: "plimsoll.yaml".into(),
        set: vec![("segment".into(), "l".into())],
        credentials: Default::default(),
    };
    let desired =
        plimsoll_syncer::desired::load(&source, None, std::path::Path::new(&site.helm())).unwrap();
    let opts = sync_options(&site);
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let progress: plimsoll_syncer::execute::Progress = {
        let lines = lines.clone();
        std::sync::Arc::new(move |l: &str| lines.lock().unwrap().push(l.to_string()))
    };
    let client = site.client();
    let before = site.pvc_uids().await;
    let journal_at_start = site.journal().await;

    // Approved, then someone grows one claim by hand: the sync stops.
    let Preparation::Ready(prepared) = prepare(&client, &desired, &opts, &progress).await.unwrap()
    else {
        panic!("m to l has steps");
    };
    let approved = prepared.plan().clone();
    let (pvc, to) = approved
        .releases
        .iter()
        .flat_map(|r| &r.steps)
        .find_map(|s| match s {
            plimsoll_planner::plan::Step::ExpandPvc { pvc, to, .. } => {
                Some((pvc.clone(), to.clone()))
            }
            _ => None,
        })
        .expect("an expansion");
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), NS);
    pvcs.patch(
        &pvc,
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(json!({"spec": {"resources": {"requests": {"storage": to}}}})),
    )
    .await
    .unwrap();
    let outcome = prepared
        .execute(
            &client,
            &desired,
            &opts,
            Default::default(),
            progress.clone(),
            true,
        )
        .await
        .unwrap();
    let SyncOutcome::StateChanged { now, .. } = outcome else {
        panic!("expected StateChanged, got {outcome:?}");
    };
    assert_ne!(now.releases, approved.releases);
    let after = site.pvc_uids().await;
    for (name, (uid, size)) in &before {
        if *name != pvc {
            assert_eq!(after[name], (uid.clone(), size.clone()), "{name} untouched");
        }
    }
    assert_eq!(
        site.journal().await,
        journal_at_start,
        "the stopped sync wrote nothing to the journal"
    );

    // Approved again and run: the journal holds exactly the approved steps.
    // (First let the hand-made resize finish, so that the cluster does not
    // change under this approval too.)
    for _ in 0..300 {
        let grown = pvcs
            .get(&pvc)
            .await
            .unwrap()
            .status
            .and_then(|s| s.capacity)
            .is_some_and(|c| c["storage"].0 == to);
        if grown {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let Preparation::Ready(prepared) = prepare(&client, &desired, &opts, &progress).await.unwrap()
    else {
        panic!("steps remain");
    };
    let approved = prepared.plan().clone();
    let expected = plimsoll_planner::journal::Journal::new(&approved, &desired.digest, None)
        .to_data()["steps"]
        .clone();
    let outcome = prepared
        .execute(&client, &desired, &opts, Default::default(), progress, true)
        .await
        .unwrap();
    assert!(
        matches!(outcome, SyncOutcome::Done { .. }),
        "{outcome:?}: {:?}",
        lines.lock().unwrap()
    );
    assert_eq!(site.journal().await["steps"], expected);
}
}

/// `plimsoll sync` at a terminal (a real pty, through util-linux
/// `script`), answering `answer` to its question; the whole transcript.
fn sync_at_a_terminal(site: &Site, segment: &str, answer: &str) -> String {
    use std::io::{Read, Write};
    let command = format!(
        "{} sync --set segment={segment} --kubeconfig {} --helm {}",
        env!("CARGO_BIN_EXE_plimsoll"),
        site.kubeconfig(),
        site.helm()
    );
    let mut child = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .current_dir(site.repo.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("script (util-linux) runs the command at a pty");
    // Kept open until the command ends: an early EOF would end `script`.
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        out
    });
    std::thread::sleep(Duration::from_secs(3));
    stdin.write_all(answer.as_bytes()).unwrap();
    stdin.flush().unwrap();
    let status = child.wait().unwrap();
    drop(stdin);
    let out = reader.join().unwrap();
    format!("{status:?}\n{out}")
}

on_both_versions! {
/// At a terminal, `sync` shows the plan once, asks, and runs exactly what
/// was shown; "no" changes nothing.
async fn sync_at_a_terminal_asks_once_and_runs_what_was_shown() {
    let Some(site) = installed_site(&[]).await else {
        return;
    };
    let before = site.pvc_uids().await;
    let declined = sync_at_a_terminal(&site, "l", "n\n");
    assert!(declined.contains("Apply this plan? [y/N]"), "{declined}");
    assert!(declined.contains("Nothing changed."), "{declined}");
    assert_eq!(site.pvc_uids().await, before, "declined: {declined}");

    let accepted = sync_at_a_terminal(&site, "l", "y\n");
    assert_eq!(
        accepted.matches("Apply this plan?").count(),
        1,
        "asked once: {accepted}"
    );
    assert_eq!(
        accepted.matches("expand PVC data-mariadb-galera-0").count(),
        2,
        "the plan shown once, then the step run once: {accepted}"
    );
    assert!(accepted.contains("Sync complete"), "{accepted}");
    assert_eq!(site.pvc_uids().await["data-mariadb-galera-0"].1, "15Gi");
}
}

on_both_versions! {
/// The daemon runs in-process (the runtime is a library): it serves its
/// endpoint and status page, syncs the branch's commit, and stops when
/// asked, giving its stack's lease back.
async fn the_daemon_runs_in_process_and_stops_when_asked() {
    use plimsoll_daemon::{DaemonOptions, Repository, StatusOptions, Upstream};
    let Some(site) = site(StorageBehaviour::default(), false).await else {
        return;
    };
    let git = git2::Repository::init(site.repo.path()).unwrap();
    git.set_head("refs/heads/main").unwrap();
    let commit = commit_all(&git, "segment m");
    let opts = DaemonOptions {
        repositories: vec![Repository {
            upstream: Upstream::Local(site.repo.path().to_path_buf()),
            branch: "main".into(),
            stacks: vec!["plimsoll.yaml".into()],
            set: Vec::new(),
        }],
        interval: Duration::from_secs(300),
        listen: Some("127.0.0.1:0".parse().unwrap()),
        status: Some(StatusOptions {
            listen: "127.0.0.1:0".parse().unwrap(),
            token: None,
            explicit: true,
        }),
        self_heal: false,
        webhook_secret: None,
        credentials: Default::default(),
        identity: "in-process".into(),
        group: "default".into(),
        max_syncs: 4,
    };
    let stop = plimsoll_syncer::sync::Stop::default();
    let (tx, rx) = std::sync::mpsc::channel();
    let daemon = tokio::spawn(plimsoll_daemon::run(
        opts,
        site.client(),
        sync_options(&site),
        stop.clone(),
        move |running| tx.send((running.addr, running.status_addr)).unwrap(),
    ));
    let (addr, status_addr) = rx.recv_timeout(Duration::from_secs(30)).unwrap();
    let addr = addr.expect("bound").to_string();
    let status_addr = status_addr.expect("the status page is served").to_string();
    let mut synced = false;
    for _ in 0..600 {
        synced =
            metric(&addr, "plimsoll_synced_revision_info").is_some_and(|l| l.contains(&commit));
        if synced {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(synced, "the commit was synced");
    assert_eq!(http(&addr, "GET", "/readyz").0, 200);
    assert_eq!(site.release_revision("thingpark-data").await, 1);
    let (code, json) = http(&status_addr, "GET", "/status.json");
    assert_eq!(code, 200, "{json}");
    assert!(json.contains("\"state\": \"in-sync\"") && json.contains(&commit), "{json}");
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(site.client(), "plimsoll");
    let held = |l: &k8s_openapi::api::coordination::v1::Lease| {
        l.metadata.name.as_deref().unwrap_or("").starts_with("plimsoll-stack-")
            && l.spec.as_ref().and_then(|s| s.holder_identity.as_deref()) == Some("in-process")
    };
    let list = leases.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(list.iter().filter(|l| held(l)).count(), 1, "the stack's owner lease");
    stop.request();
    tokio::time::timeout(Duration::from_secs(10), daemon)
        .await
        .expect("stops promptly")
        .unwrap()
        .unwrap();
    assert_eq!(http(&addr, "GET", "/healthz").0, 0, "the endpoint is gone");
    let list = leases.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(list.iter().filter(|l| held(l)).count(), 0, "given back on a clean stop");
}
}

/// v1.32: with `persistentVolumeClaimRetentionPolicy` on every StatefulSet
/// (`whenDeleted: Delete`, `whenScaled: Delete`), the m to l scale-up's
/// orphan re-create keeps every claim (the same PVCs, now owned by the new
/// StatefulSets, the policy kept), and a replica decrease is refused before
/// any change, naming the claims it would delete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_32_retention_policies_survive_the_scale_up_and_a_deleting_scale_down_is_refused() {
    plimsoll_testenv::KubeVersion::V1_32.select();
    let Some(site) = site(StorageBehaviour::default(), false).await else {
        return;
    };
    let policy = "  pvcRetentionPolicy:\n    whenDeleted: Delete\n    whenScaled: Delete\n";
    for f in ["site/data-stack.yaml", "site/application-stack.yaml"] {
        let p = site.repo.path().join(f);
        let text = std::fs::read_to_string(&p).unwrap();
        std::fs::write(
            &p,
            text.replacen("global:\n", &format!("global:\n{policy}"), 1),
        )
        .unwrap();
    }
    let o = site.sync("m", &[], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let sts: Api<StatefulSet> = Api::namespaced(site.client(), NS);
    let owned_by = |p: &PersistentVolumeClaim| {
        p.metadata
            .owner_references
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|o| o.uid)
            .collect::<Vec<_>>()
    };
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(site.client(), NS);
    let mariadb = sts.get("mariadb-galera").await.unwrap();
    let policy_of = |s: &StatefulSet| {
        s.spec
            .as_ref()
            .and_then(|s| s.persistent_volume_claim_retention_policy.clone())
            .map(|p| (p.when_deleted, p.when_scaled))
    };
    assert_eq!(
        policy_of(&mariadb),
        Some((Some("Delete".into()), Some("Delete".into())))
    );
    let old_uid = mariadb.metadata.uid.clone().unwrap();
    for _ in 0..100 {
        let p = pvcs.get("data-mariadb-galera-0").await.unwrap();
        if owned_by(&p).contains(&old_uid) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let installed = site.pvc_uids().await;

    let o = site.sync("l", &[], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let grown = site.pvc_uids().await;
    assert_eq!(installed.len(), grown.len());
    for (name, (uid, _)) in &installed {
        assert_eq!(
            &grown[name].0, uid,
            "{name} kept across the orphan re-create"
        );
    }
    assert_eq!(grown["data-mariadb-galera-0"].1, "15Gi");
    let mariadb = sts.get("mariadb-galera").await.unwrap();
    let new_uid = mariadb.metadata.uid.clone().unwrap();
    assert_ne!(new_uid, old_uid, "re-created");
    assert_eq!(
        policy_of(&mariadb),
        Some((Some("Delete".into()), Some("Delete".into()))),
        "the policy is kept"
    );
    let mut adopted = false;
    for _ in 0..150 {
        let p = pvcs.get("data-mariadb-galera-0").await.unwrap();
        adopted = owned_by(&p).contains(&new_uid) && !owned_by(&p).contains(&old_uid);
        if adopted {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(adopted, "the claims are owned by the new StatefulSet");

    // One replica fewer with whenScaled: Delete: refused, nothing changes.
    let replicas = mariadb.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let p = site.repo.path().join("site/data-stack.yaml");
    let text_before = std::fs::read_to_string(&p).unwrap();
    std::fs::write(
        &p,
        text_before.replacen(
            "mariadb-galera:\n",
            &format!("mariadb-galera:\n  replicaCount: {}\n", replicas - 1),
            1,
        ),
    )
    .unwrap();
    let o = site.sync("l", &[], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let last = format!("data-mariadb-galera-{}", replicas - 1);
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .contains(&format!("whenScaled: Delete, which deletes PVC(s) {last}")),
        "{}",
        text(&o)
    );
    assert_eq!(site.pvc_uids().await, grown, "nothing deleted");
    assert_eq!(
        sts.get("mariadb-galera")
            .await
            .unwrap()
            .spec
            .unwrap()
            .replicas,
        Some(replicas)
    );
}

on_both_versions! {
/// A resize the storage driver cannot do fails the sync at once with the
/// driver's reason (v1.20: a `VolumeResizeFailed` condition; v1.32: the
/// `ControllerResizeInfeasible` resize status), before anything is
/// re-created or upgraded.
async fn a_failed_resize_stops_the_sync_at_once_with_the_reason() {
    let storage = StorageBehaviour {
        fail_resize: ["data-mariadb-galera-0".to_string()].into_iter().collect(),
        ..Default::default()
    };
    let Some(site) = site(storage, false).await else {
        return;
    };
    let o = site.sync("m", &[], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let sts: Api<StatefulSet> = Api::namespaced(site.client(), NS);
    let uid = sts.get("mariadb-galera").await.unwrap().metadata.uid;
    let o = site.sync("l", &["--expansion-timeout", "120"], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("the storage driver failed to expand PVC data-mariadb-galera-0"),
        "{}",
        text(&o)
    );
    if plimsoll_testenv::KubeVersion::current() == plimsoll_testenv::KubeVersion::V1_32 {
        assert!(err.contains("ControllerResizeInfeasible"), "{}", text(&o));
    }
    assert_eq!(
        sts.get("mariadb-galera").await.unwrap().metadata.uid,
        uid,
        "not re-created"
    );
    assert_eq!(site.release_revision("thingpark-data").await, 1, "not upgraded");
}
}
