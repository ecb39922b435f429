//! A cStor replica migration (seed 002) on the real control plane, with
//! the cStor stand-in (`testenv/src/operators.rs`) acting on the real
//! CRDs: the worked example `examples/cstor-migration` moves a volume's
//! replica from node2's pool to node3's in phases, killed after the add
//! and resumed; moving both replicas takes four phases, each accepted by
//! the CVC's one-change rule.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use plimsoll_testenv::operators::{
    cstor_cvc_api, cstor_cvr_api, install_cstor_crds, CstorBehaviour, CstorOperator,
};
use plimsoll_testenv::{on_both_versions, Cluster, Env, KubeVersion};

mod support;
use support::{copy_dir, text};

const NS: &str = "analytics";
const OPENEBS: &str = "openebs";
const VOLUME: &str = "pvc-d1b26676-5035-4e5b-b564-68869b023306";

fn pool(node: &str) -> String {
    format!("cspc-stripe-pool-{node}")
}

struct Site {
    cluster: Cluster,
    cstor: CstorOperator,
    repo: tempfile::TempDir,
}

impl Site {
    /// The example's repository, and a volume provisioned on `nodes`.
    async fn start(nodes: &[&str]) -> Option<Site> {
        let env = Env::require()?;
        let cluster = Cluster::start(&env, NS).await.expect("cluster");
        cluster
            .cp
            .namespace(&cluster.client, OPENEBS)
            .await
            .expect("namespace");
        install_cstor_crds(&cluster.client).await.expect("CRDs");
        let cstor =
            CstorOperator::start(cluster.client.clone(), OPENEBS, CstorBehaviour::default()).await;
        let cvc: kube::api::DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "cstor.openebs.io/v1", "kind": "CStorVolumeConfig",
            "metadata": {"name": VOLUME, "namespace": OPENEBS},
            "spec": {"capacity": {"storage": "10Gi"},
                     "provision": {"capacity": {"storage": "10Gi"}, "replicaCount": nodes.len()},
                     "policy": {"replicaPoolInfo": nodes.iter().map(|n| serde_json::json!({"poolName": pool(n)})).collect::<Vec<_>>()}}
        }))
        .unwrap();
        cstor_cvc_api(&cluster.client, OPENEBS)
            .create(&Default::default(), &cvc)
            .await
            .expect("CVC");
        let repo = tempfile::tempdir().unwrap();
        copy_dir(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/cstor-migration"),
            repo.path(),
        );
        let site = Site {
            cluster,
            cstor,
            repo,
        };
        let want: Vec<String> = nodes.iter().map(|n| pool(n)).collect();
        site.until("the volume is provisioned", |s| s.status_pools == want)
            .await;
        Some(site)
    }

    /// Sets the placement the stack file asks for.
    fn place_on(&self, nodes: &[&str]) {
        let path = self.repo.path().join("plimsoll.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        let start = text.find("            value:\n").unwrap() + "            value:\n".len();
        let mut out = text[..start].to_string();
        for n in nodes {
            out.push_str(&format!("              - poolName: {}\n", pool(n)));
        }
        std::fs::write(&path, out).unwrap();
    }

    fn plimsoll(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        support::plimsoll_on(&self.cluster.cp, self.repo.path(), args, env)
    }

    fn sync(&self, env: &[(&str, &str)]) -> Output {
        self.plimsoll(&["sync", "--yes", "--working-tree"], env)
    }

    async fn volume(&self) -> Volume {
        let cvc = cstor_cvc_api(&self.cluster.client, OPENEBS)
            .get(VOLUME)
            .await
            .unwrap();
        let strings = |v: &serde_json::Value, key: Option<&str>| -> Vec<String> {
            v.as_array()
                .into_iter()
                .flatten()
                .filter_map(|x| match key {
                    Some(k) => x[k].as_str().map(str::to_string),
                    None => x.as_str().map(str::to_string),
                })
                .collect()
        };
        let mut replicas: Vec<(String, String)> = cstor_cvr_api(&self.cluster.client, OPENEBS)
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|r| {
                (
                    r.metadata
                        .name
                        .unwrap_or_default()
                        .trim_start_matches(&format!("{VOLUME}-"))
                        .to_string(),
                    r.data["status"]["phase"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        replicas.sort();
        Volume {
            spec_pools: strings(
                &cvc.data["spec"]["policy"]["replicaPoolInfo"],
                Some("poolName"),
            ),
            status_pools: strings(&cvc.data["status"]["poolInfo"], None),
            replicas,
        }
    }

    async fn until(&self, what: &str, done: impl Fn(&Volume) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let v = self.volume().await;
            if done(&v) {
                return;
            }
            assert!(Instant::now() < deadline, "{what}: {v:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[derive(Debug)]
struct Volume {
    spec_pools: Vec<String>,
    status_pools: Vec<String>,
    /// (pool, phase) of each replica.
    replicas: Vec<(String, String)>,
}

on_both_versions! {
/// node2 to node3: the add, a wait until the new replica has reconstructed
/// and the volume is Healthy, then the removal; killed right after the add,
/// the next sync resumes the journal and finishes.
async fn a_cstor_replica_moves_from_node2_to_node3_in_phases_and_resumes_after_a_kill() {
    let Some(site) = Site::start(&["node1", "node2"]).await else {
        return;
    };
    let plan = site.plimsoll(&["plan"], &[]);
    let plan_text = String::from_utf8_lossy(&plan.stdout).into_owned();
    assert_eq!(plan.status.code(), Some(2), "{}", text(&plan));
    assert!(plan_text.contains("phase 1 of 2: add poolName cspc-stripe-pool-node3"), "{}", text(&plan));
    assert!(plan_text.contains("phase 2 of 2: remove poolName cspc-stripe-pool-node2"), "{plan_text}");

    let o = site.sync(&[("PLIMSOLL_FAULT_ABORT_AFTER", "change-list-element")]);
    assert_eq!(o.status.code(), None, "killed by a signal: {}", text(&o));
    // Killed after the add: node3's pool listed, node2's replica still there.
    let v = site.volume().await;
    assert_eq!(v.spec_pools, [pool("node1"), pool("node2"), pool("node3")], "{v:?}");
    assert!(v.replicas.iter().any(|(p, _)| *p == pool("node2")), "{v:?}");

    let o = site.sync(&[]);
    assert!(o.status.success(), "{}", text(&o));
    let said = String::from_utf8_lossy(&o.stderr);
    assert!(said.contains("resuming plan"), "{}", text(&o));
    assert!(!said.contains("add poolName"), "the add is not done twice: {}", text(&o));
    let v = site.volume().await;
    assert_eq!(v.spec_pools, [pool("node1"), pool("node3")], "{v:?}");
    assert_eq!(v.status_pools, [pool("node1"), pool("node3")], "{v:?}");
    assert_eq!(
        v.replicas,
        [
            (pool("node1"), "Healthy".to_string()),
            (pool("node3"), "Healthy".to_string())
        ],
        "{v:?}"
    );
    assert!(site.cstor.refused.lock().unwrap().is_empty(), "{:?}", site.cstor.refused);
    // Settled: nothing more to do.
    let o = site.sync(&[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("No changes"),
        "{}",
        text(&o)
    );
}
}

on_both_versions! {
/// Both replicas move: four phases (add, remove, add, remove), never two
/// changes in one edit. On v1.32 the CVC's rule (the webhook's) refuses an
/// edit of two at once, which the stand-in also never acts on.
async fn moving_both_replicas_takes_four_phases_of_one_change_each() {
    let Some(site) = Site::start(&["node1", "node2"]).await else {
        return;
    };
    if KubeVersion::current() == KubeVersion::V1_32 {
        let two_at_once = serde_json::json!([{"op": "replace", "path": "/spec/policy/replicaPoolInfo",
            "value": [{"poolName": pool("node3")}, {"poolName": pool("node4")}]}]);
        let e = cstor_cvc_api(&site.cluster.client, OPENEBS)
            .patch(
                VOLUME,
                &Default::default(),
                &kube::api::Patch::<()>::Json(serde_json::from_value(two_at_once).unwrap()),
            )
            .await
            .expect_err("two replica changes in one edit are refused");
        assert!(e.to_string().contains("only one replica"), "{e}");
    }
    site.place_on(&["node3", "node4"]);
    let o = site.sync(&[]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stderr).into_owned();
    let order: Vec<usize> = [
        "add poolName cspc-stripe-pool-node3",
        "remove poolName cspc-stripe-pool-node1",
        "add poolName cspc-stripe-pool-node4",
        "remove poolName cspc-stripe-pool-node2",
    ]
    .iter()
    .map(|s| out.find(s).unwrap_or_else(|| panic!("{s}: {}", text(&o))))
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{}", text(&o));
    let v = site.volume().await;
    assert_eq!(v.status_pools, [pool("node3"), pool("node4")], "{v:?}");
    assert_eq!(
        v.replicas,
        [
            (pool("node3"), "Healthy".to_string()),
            (pool("node4"), "Healthy".to_string())
        ],
        "{v:?}"
    );
    assert!(site.cstor.refused.lock().unwrap().is_empty(), "{:?}", site.cstor.refused);
}
}
