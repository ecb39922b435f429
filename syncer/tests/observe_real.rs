//! Observed state read from a real control plane, and a plan against it.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use kube::api::Api;
use plimsoll_planner::plan::{plan, PlanOptions, Step};
use plimsoll_planner::state::{ClaimTemplate, DesiredRelease, DesiredStatefulSet};
use plimsoll_syncer::observe::observe;
use plimsoll_testenv::{on_both_versions, Cluster, Env};
use serde_json::json;

on_both_versions! {
async fn observes_a_helm_installed_data_stack_and_plans_its_scale_up() {
    let Some(env) = Env::require() else { return };
    let cluster = Cluster::start(&env, "thingpark").await.expect("cluster");
    let (cp, client, ns) = (
        &cluster.cp,
        cluster.client.clone(),
        cluster.namespace.clone(),
    );

    let values = std::env::temp_dir().join(format!("plimsoll-values-{}.yaml", std::process::id()));
    std::fs::write(&values, "mariadb-galera:\n  replicaCount: 2\n  rootUser:\n    password: s3cret\nmongo-replicaset:\n  replicaCount: 1\n").unwrap();
    let chart =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/charts/test-data-1.0.0");
    let out = std::process::Command::new(&cp.helm)
        .args(["upgrade", "--install", "thingpark-data"])
        .arg(&chart)
        .args(["--namespace", &ns, "--version", "1.0.0", "-f"])
        .arg(&values)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let ready = |n: &'static str, want: i32| {
            let sts = sts.clone();
            async move {
                sts.get(n)
                    .await
                    .ok()
                    .and_then(|s| s.status)
                    .and_then(|s| s.ready_replicas)
                    == Some(want)
            }
        };
        // Ready pods, and claims whose capacity the binder has recorded.
        let claims: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
            Api::namespaced(client.clone(), &ns);
        let bound = claims.list(&Default::default()).await.is_ok_and(|l| {
            l.items.len() == 3
                && l.items
                    .iter()
                    .all(|c| c.status.as_ref().and_then(|s| s.capacity.as_ref()).is_some())
        });
        if ready("mariadb-galera", 2).await && ready("mongo-replicaset", 1).await && bound {
            break;
        }
        assert!(Instant::now() < deadline, "statefulsets not ready");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    let observed = observe(&client, std::slice::from_ref(&ns), &[])
        .await
        .expect("observe");
    assert_eq!(observed.releases.len(), 1);
    let r = &observed.releases[0];
    assert_eq!(
        (
            r.name.as_str(),
            r.chart.as_str(),
            r.version.as_str(),
            r.revision
        ),
        ("thingpark-data", "test-data", "1.0.0", 1)
    );
    assert_eq!(
        r.values["mariadb-galera"]["replicaCount"], 2,
        "user-supplied values: {}",
        r.values
    );
    let galera = observed
        .statefulsets
        .iter()
        .find(|s| s.name == "mariadb-galera")
        .expect("galera");
    assert_eq!(galera.release.as_deref(), Some("thingpark-data"));
    assert_eq!(galera.claim_templates[0].size, "10Gi");
    let mut names: Vec<&str> = observed.pvcs.iter().map(|p| p.name.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "data-mariadb-galera-0",
            "data-mariadb-galera-1",
            "data-mongo-replicaset-0"
        ]
    );
    assert!(
        observed.pvcs.iter().all(|p| p.capacity.is_some()),
        "bound: {:?}",
        observed.pvcs
    );
    assert!(observed
        .storage_classes
        .iter()
        .any(|c| c.name == "plimsoll-test-expandable" && c.allow_volume_expansion));

    // Desired: mariadb-galera grows to 15Gi.
    let mut desired_values = r.values.clone();
    desired_values["mariadb-galera"]["persistence"] = json!({"size": "15Gi"});
    let tmpl = |size: &str| ClaimTemplate {
        name: "data".into(),
        storage_class: Some("plimsoll-test-expandable".into()),
        size: size.into(),
    };
    let desired = [DesiredRelease {
        pulled: None,
        name: "thingpark-data".into(),
        namespace: ns.clone(),
        stage: "data".into(),
        chart: "test-data".into(),
        version: "1.0.0".into(),
        values: desired_values,
        statefulsets: vec![
            DesiredStatefulSet {
                name: "mariadb-galera".into(),
                replicas: 2,
                claim_templates: vec![tmpl("15Gi")],
                pvc_retention: Default::default(),
            },
            DesiredStatefulSet {
                name: "mongo-replicaset".into(),
                replicas: 1,
                claim_templates: vec![tmpl("25Gi")],
                pvc_retention: Default::default(),
            },
        ],
        deployments: vec![],
        daemonsets: vec![],
        patches: vec![],
        custom_resources: vec![],
        ready_timeout: None,
        requires: vec![],
        manifest: String::new(),
    }];
    let p = plan(&desired, &observed, &PlanOptions::default());
    assert!(p.refusals.is_empty(), "{:?}", p.refusals);
    let kinds: Vec<String> = p.releases[0]
        .steps
        .iter()
        .map(|s| match s {
            Step::ExpandPvc { pvc, .. } => format!("expand {pvc}"),
            Step::WaitForExpansion { pvc, .. } => format!("wait {pvc}"),
            Step::RecreateStatefulSet {
                statefulset, uid, ..
            } => {
                assert_eq!(uid, &galera.uid);
                format!("recreate {statefulset}")
            }
            Step::HelmUpgrade { .. } => "upgrade".into(),
            Step::WaitForReady { .. } => "ready".into(),
            Step::PatchResource { target, .. } => format!("patch {}", target.name),
            Step::WaitForHealthy { resources, .. } => format!("healthy {}", resources.len()),
            Step::WaitForOperatorExpansion { pvc, .. } => format!("operator grows {pvc}"),
            other => other.describe(),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "expand data-mariadb-galera-0",
            "expand data-mariadb-galera-1",
            "wait data-mariadb-galera-0",
            "wait data-mariadb-galera-1",
            "recreate mariadb-galera",
            "upgrade",
            "ready"
        ]
    );
    let text = plimsoll_planner::plan::to_text(&p);
    assert!(!text.contains("s3cret"), "secrets redacted: {text}");
    let _ = std::fs::remove_file(values);
}
}
