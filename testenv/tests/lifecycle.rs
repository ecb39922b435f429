//! The test environment cleans up after itself, and its actors do what
//! tests tell them to.

use std::io::BufRead;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use plimsoll_testenv::actors::{
    create_storage_class, NodeActor, NodeBehaviour, StorageActor, StorageBehaviour,
};
use plimsoll_testenv::{on_both_versions, ControlPlane, Env};
use serde_json::json;

fn alive(pid: u32) -> bool {
    // A zombie (exited, not yet reaped) counts as gone.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.split(") ")
                .nth(1)
                .is_some_and(|rest| rest.starts_with('Z'))
        })
        .unwrap_or(false)
}

fn wait_gone(pids: &[u32], within: Duration) {
    let deadline = Instant::now() + within;
    while pids.iter().any(|&p| alive(p)) {
        assert!(
            Instant::now() < deadline,
            "processes still alive after {within:?}: {pids:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

on_both_versions! {
async fn dropping_the_control_plane_stops_every_process() {
    let Some(env) = Env::require() else { return };
    let cp = ControlPlane::start(&env).await.expect("control plane");
    let pids = cp.pids();
    assert_eq!(pids.len(), 3);
    assert!(pids.iter().all(|&p| alive(p)));
    drop(cp);
    wait_gone(&pids, Duration::from_secs(10));
}
}

on_both_versions! {
fn a_killed_test_process_leaves_no_control_plane_behind() {
    if Env::require().is_none() {
        return;
    }
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_plimsoll-testenv-cluster"))
        .arg("600")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the cluster binary");
    let stdout = child.stdout.take().expect("stdout");
    let pids: Vec<u32> = std::io::BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| {
            l.strip_prefix("PIDS=")
                .map(|p| p.split(',').filter_map(|x| x.parse().ok()).collect())
        })
        .expect("the cluster reports its pids");
    assert_eq!(pids.len(), 3);
    // SIGKILL: no unwinding, no Drop; the watchdog must clean up.
    child.kill().expect("kill");
    child.wait().expect("reap");
    wait_gone(&pids, Duration::from_secs(15));
}
}

on_both_versions! {
async fn actors_follow_their_instructions() {
    let Some(env) = Env::require() else { return };
    let cp = ControlPlane::start(&env).await.expect("control plane");
    let client = cp.client().await.unwrap();
    let ns = cp.namespace(&client, "actors").await.unwrap();

    // Node stand-in: one pod kept unready, one failed, one ready.
    let mut behaviour = NodeBehaviour::default();
    behaviour.keep_unready.insert("unready".into());
    behaviour.fail.insert("broken".into());
    let node = NodeActor::start(client.clone(), "stand-in", behaviour)
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    for name in ["ready", "unready", "broken"] {
        let pod: Pod = serde_json::from_value(
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "main", "image": "registry.invalid/x:1"}]}}),
        )
        .unwrap();
        pods.create(&PostParams::default(), &pod).await.unwrap();
    }
    let state = |p: &Pod| {
        let s = p.status.clone().unwrap_or_default();
        let ready = s
            .conditions
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        (
            s.phase.unwrap_or_default(),
            ready,
            p.spec.as_ref().and_then(|s| s.node_name.clone()),
        )
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got: Vec<_> = futures_like_join(&pods, &["ready", "unready", "broken"])
            .await
            .iter()
            .map(state)
            .collect();
        let want = vec![
            ("Running".to_string(), true, Some("stand-in".to_string())),
            ("Running".to_string(), false, Some("stand-in".to_string())),
            ("Failed".to_string(), false, Some("stand-in".to_string())),
        ];
        if got == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pods did not reach {want:?}: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Told otherwise, the node makes the unready pod ready.
    node.behaviour.lock().unwrap().keep_unready.clear();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !state(&pods.get("unready").await.unwrap()).1 {
        assert!(Instant::now() < deadline, "pod never became ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Storage stand-in: a stalled and a failed resize.
    create_storage_class(&client, "plimsoll-test-expandable", true)
        .await
        .unwrap();
    let mut sb = StorageBehaviour::default();
    sb.stall_resize.insert("stalled".into());
    sb.fail_resize.insert("failing".into());
    let _storage = StorageActor::start(client.clone(), "plimsoll-test-expandable", sb).await;
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    for name in ["stalled", "failing"] {
        let pvc: PersistentVolumeClaim = serde_json::from_value(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name}, "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "plimsoll-test-expandable",
            "resources": {"requests": {"storage": "1Gi"}}}}))
        .unwrap();
        pvcs.create(&PostParams::default(), &pvc).await.unwrap();
    }
    let capacity = |p: &PersistentVolumeClaim| {
        p.status
            .as_ref()
            .and_then(|s| s.capacity.as_ref())
            .and_then(|c| c.get("storage"))
            .map(|q| q.0.clone())
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let a = pvcs.get("stalled").await.unwrap();
        let b = pvcs.get("failing").await.unwrap();
        if capacity(&a).is_some() && capacity(&b).is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "claims not bound");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let grow = json!({"spec": {"resources": {"requests": {"storage": "2Gi"}}}});
    for name in ["stalled", "failing"] {
        pvcs.patch(name, &PatchParams::default(), &Patch::Merge(&grow))
            .await
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let failing = pvcs.get("failing").await.unwrap();
        let failed = failing
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| {
                c.iter()
                    .any(|c| c.reason.as_deref() == Some("VolumeResizeFailed"))
            });
        if failed {
            break;
        }
        assert!(Instant::now() < deadline, "failing resize not reported");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for name in ["stalled", "failing"] {
        assert_eq!(
            capacity(&pvcs.get(name).await.unwrap()).as_deref(),
            Some("1Gi"),
            "{name} did not grow"
        );
    }
}
}

async fn futures_like_join(pods: &Api<Pod>, names: &[&str]) -> Vec<Pod> {
    let mut out = Vec::new();
    for n in names {
        out.push(pods.get(n).await.expect("pod"));
    }
    out
}
