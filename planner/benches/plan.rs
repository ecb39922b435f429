//! The planner at scale: a generated snapshot of 500 releases and 5,000
//! PVCs (5 StatefulSets of 2 replicas per release), every volume growing.
//! `cargo bench -p plimsoll-syncer --bench plan`.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use plimsoll_planner::plan::{plan, PlanOptions};
use plimsoll_planner::state::*;
use serde_json::json;

fn generate() -> (Vec<DesiredRelease>, ObservedState) {
    let mut desired = Vec::new();
    let mut observed = ObservedState {
        storage_classes: vec![StorageClassState {
            name: "fast".into(),
            allow_volume_expansion: true,
        }],
        ..ObservedState::default()
    };
    for r in 0..500 {
        let ns = format!("ns-{}", r % 50);
        let name = format!("release-{r}");
        let tmpl = |size: &str| ClaimTemplate {
            name: "data".into(),
            storage_class: Some("fast".into()),
            size: size.into(),
        };
        let mut d_sts = Vec::new();
        for s in 0..5 {
            let sts = format!("{name}-db{s}");
            d_sts.push(DesiredStatefulSet {
                name: sts.clone(),
                replicas: 2,
                claim_templates: vec![tmpl("20Gi")],
                pvc_retention: Default::default(),
            });
            observed.statefulsets.push(StatefulSetState {
                name: sts.clone(),
                namespace: ns.clone(),
                uid: format!("uid-{sts}"),
                release: Some(name.clone()),
                replicas: 2,
                ready_replicas: 2,
                claim_templates: vec![tmpl("10Gi")],
            });
            for i in 0..2 {
                observed.pvcs.push(PvcState {
                    name: format!("data-{sts}-{i}"),
                    namespace: ns.clone(),
                    storage_class: Some("fast".into()),
                    request: "10Gi".into(),
                    capacity: Some("10Gi".into()),
                    conditions: vec![],
                });
            }
        }
        observed.releases.push(ReleaseState {
            name: name.clone(),
            namespace: ns.clone(),
            chart: "app".into(),
            version: "1.0.0".into(),
            revision: 1,
            status: "deployed".into(),
            values: json!({"db": {"size": "10Gi", "password": "x"}}),
            manifest: String::new(),
        });
        desired.push(DesiredRelease {
            pulled: None,
            name,
            namespace: ns,
            stage: if r % 2 == 0 {
                "data".into()
            } else {
                "application".into()
            },
            chart: "app".into(),
            version: "1.0.0".into(),
            values: json!({"db": {"size": "20Gi", "password": "y"}}),
            statefulsets: d_sts,
            deployments: vec![],
            daemonsets: vec![],
            patches: vec![],
            custom_resources: vec![],
            ready_timeout: None,
            requires: vec![],
            manifest: String::new(),
        });
    }
    assert_eq!(observed.pvcs.len(), 5000);
    (desired, observed)
}

fn bench(c: &mut Criterion) {
    let (desired, observed) = generate();
    let p = plan(&desired, &observed, &PlanOptions::default());
    assert_eq!(p.releases.len(), 500);
    c.bench_function("plan 500 releases / 5,000 PVCs", |b| {
        b.iter(|| {
            black_box(plan(
                black_box(&desired),
                black_box(&observed),
                &PlanOptions::default(),
            ))
        })
    });
    let snapshot = serde_json::to_string(&observed).expect("json");
    c.bench_function("load a 500-release snapshot (JSON)", |b| {
        b.iter(|| {
            black_box(serde_json::from_str::<ObservedState>(black_box(&snapshot)).expect("parse"))
        })
    });
}

/// Health rules for 1,000 custom resources: 500 by a declared CEL rule
/// (comparing with the desired object), 500 by the built-in Pravega rule.
fn health(c: &mut Criterion) {
    use plimsoll_planner::health::{HealthRuleSpec, HealthRules};
    let rules = HealthRules::compile(&[HealthRuleSpec {
        api_version: "example.com/v1".into(),
        kind: "Widget".into(),
        current: "status.conditions.exists(c, c.type == 'Ready' && c.status == 'True') && status.version == desired.spec.version".into(),
        failed: Some("status.conditions.exists(c, c.type == 'Stalled' && c.status == 'True')".into()),
        at: "plimsoll.yaml:1:1".into(),
    }])
    .expect("rules");
    let objects: Vec<(serde_json::Value, serde_json::Value)> = (0..1000)
        .map(|i| {
            if i % 2 == 0 {
                (
                    json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": format!("w{i}"), "generation": 3},
                           "status": {"version": "1.2.3", "observedGeneration": 3,
                                      "conditions": [{"type": "Ready", "status": "True"}, {"type": "Stalled", "status": "False"}]}}),
                    json!({"spec": {"version": "1.2.3"}}),
                )
            } else {
                (
                    json!({"apiVersion": "pravega.pravega.io/v1beta1", "kind": "PravegaCluster", "metadata": {"name": format!("p{i}")},
                           "spec": {"version": "0.10.0"},
                           "status": {"currentVersion": "0.10.0", "conditions": [
                               {"type": "Upgrading", "status": "False"}, {"type": "PodsReady", "status": "True"}]}}),
                    json!({"spec": {"version": "0.10.0"}}),
                )
            }
        })
        .collect();
    c.bench_function(
        "health of 1,000 custom resources (500 CEL, 500 built-in)",
        |b| {
            b.iter(|| {
                let current = objects
                    .iter()
                    .filter(|(o, d)| rules.health(o, Some(d)).is_current())
                    .count();
                assert_eq!(current, 1000);
                black_box(current)
            })
        },
    );
}

/// The largest phased move (256 elements, every one replaced: 512 phases)
/// and a platform move decided over a manifest of 10,000 releases of 256
/// charts (the manifest's bounds).
fn moves(c: &mut Criterion) {
    use plimsoll_planner::phased::phases;
    use plimsoll_planner::platform::{Platform, PlatformRelease};
    let live: Vec<String> = (0..256).map(|i| format!("old-{i}")).collect();
    let desired: Vec<String> = (0..256).map(|i| format!("new-{i}")).collect();
    c.bench_function(
        "phases of a 256-element list, every element replaced",
        |b| b.iter(|| black_box(phases(black_box(&live), black_box(&desired))).len()),
    );
    let charts: Vec<String> = (0..256).map(|i| format!("chart-{i}")).collect();
    let releases: Vec<PlatformRelease> = (0..10_000)
        .map(|r| PlatformRelease {
            tag: format!("{}.{}.{}", 1 + r / 1000, (r / 100) % 10, r % 100),
            charts: charts
                .iter()
                .map(|c| (c.clone(), format!("1.{r}.0")))
                .collect(),
        })
        .collect();
    let platform = Platform {
        manifest: "releases.yaml".into(),
        target: releases[9_999].tag.clone(),
        charts: charts.iter().map(|c| (c.clone(), c.clone())).collect(),
        releases: releases.clone(),
    };
    let running = releases[8_999].charts.clone();
    c.bench_function("platform move over 10,000 releases of 256 charts", |b| {
        b.iter(|| black_box(platform.plan_move(black_box(&running))).is_ok())
    });
}

/// The chart of `benches/sync.rs` rendered for release `name` with
/// `message`: a ConfigMap and a one-replica Deployment.
fn tiny_manifest(name: &str, message: &str) -> String {
    format!(
        "---\n# Source: tiny/templates/all.yaml\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  message: \"{message}\"\n---\n\
         # Source: tiny/templates/all.yaml\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n      annotations: {{message: \"{message}\"}}\n    spec:\n      containers: [{{name: main, image: registry.invalid/tiny:1}}]\n"
    )
}

/// 110 releases of the sync benchmark's chart, deployed, with their live
/// objects (as the API server returns them: defaults added); `changed` of
/// them with a new value (a manifest diff each).
fn tiny_fleet(changed: usize) -> (Vec<DesiredRelease>, ObservedState) {
    let mut desired = Vec::new();
    let mut observed = ObservedState {
        objects: Some(Vec::new()),
        ..ObservedState::default()
    };
    for i in 0..110 {
        let name = format!("r{i:03}");
        let message = if i % 11 == 0 && i / 11 < changed {
            "v2"
        } else {
            "v1"
        };
        let deployed = tiny_manifest(&name, "v1");
        observed.releases.push(ReleaseState {
            name: name.clone(),
            namespace: "bench".into(),
            chart: "tiny".into(),
            version: "1.0.0".into(),
            revision: 1,
            status: "deployed".into(),
            values: json!({"message": "v1"}),
            manifest: deployed.clone(),
        });
        let objects = observed.objects.as_mut().expect("objects");
        for (api_version, kind, namespace, obj_name, mut object) in
            plimsoll_planner::live_drift::manifest_objects(&deployed, "bench")
        {
            if kind == "Deployment" {
                object["spec"]["progressDeadlineSeconds"] = json!(600);
                object["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] =
                    json!("IfNotPresent");
            }
            object["metadata"]["annotations"] = json!({"meta.helm.sh/release-name": name});
            objects.push(plimsoll_planner::live_drift::LiveObject {
                api_version,
                kind,
                namespace,
                name: obj_name,
                object,
            });
        }
        observed.deployments.push(DeploymentState {
            name: name.clone(),
            namespace: "bench".into(),
            release: Some(name.clone()),
            replicas: 1,
            ready_replicas: 1,
        });
        desired.push(DesiredRelease {
            pulled: None,
            name: name.clone(),
            namespace: "bench".into(),
            stage: "apps".into(),
            chart: "tiny".into(),
            version: "1.0.0".into(),
            values: json!({"message": message}),
            statefulsets: vec![],
            deployments: vec![name.clone()],
            daemonsets: vec![],
            patches: vec![],
            custom_resources: vec![],
            ready_timeout: None,
            requires: vec![],
            manifest: tiny_manifest(&name, message),
        });
    }
    (desired, observed)
}

/// Manifest diffs and the live-object drift check over the 110 releases of
/// `benches/sync.rs`: nothing changed (every release compared with its
/// live objects) and 10 changed (a manifest diff each).
fn manifests(c: &mut Criterion) {
    for changed in [0, 10] {
        let (desired, observed) = tiny_fleet(changed);
        let p = plan(&desired, &observed, &PlanOptions::default());
        assert_eq!(
            p.releases.len(),
            changed,
            "{}",
            plimsoll_planner::plan::to_text(&p)
        );
        assert!(p.releases.iter().all(|r| r.objects.len() == 2));
        c.bench_function(
            &format!("plan 110 releases with manifests and live objects, {changed} changed"),
            |b| {
                b.iter(|| {
                    black_box(plan(
                        black_box(&desired),
                        black_box(&observed),
                        &PlanOptions::default(),
                    ))
                })
            },
        );
    }
}

criterion_group!(name = planner; config = Criterion::default().sample_size(20); targets = bench, health, moves, manifests);
criterion_main!(planner);
