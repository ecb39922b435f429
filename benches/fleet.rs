//! The daemon at fleet scale on the real test control plane: 1,000
//! releases in 50 stacks (20 releases each, a namespace each, a chart
//! rendering a ConfigMap), installed by three daemon replicas sharing the
//! stacks; then, with nothing to change, the reconcile pass (every stack's
//! drift check: its releases, their live objects, planned) timed from a
//! webhook until every stack has passed, and each replica's resident
//! memory. The same with one replica holding all 50 stacks.
//!
//! ```sh
//! bash scripts/provision-test-env.sh && cargo bench --bench fleet
//! ```
//!
//! `PLIMSOLL_FLEET_STACKS` / `PLIMSOLL_FLEET_RELEASES` change the shape
//! (default 50 × 20). Not criterion: one iteration installs a thousand
//! releases. For scale, Flux's published benchmark: 1,000 HelmReleases
//! reconciled in 8 min 12 s with 400 MiB.

use std::time::{Duration, Instant};

#[path = "../tests/support/mod.rs"]
mod support;
use support::fleet::{http_get, FleetRepo, Replica};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Resident and peak resident memory of a process, in MB.
fn rss_mb(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    (kb("VmRSS:"), kb("VmHWM:"))
}

/// Every stack's `last_pass` on the replicas (stack key → seconds).
fn last_passes(replicas: &[Replica]) -> std::collections::BTreeMap<String, u64> {
    let mut out = std::collections::BTreeMap::new();
    for r in replicas {
        let Some(v) = r.status_json() else { continue };
        for s in v["stacks"].as_array().into_iter().flatten() {
            if s["mine"] == true {
                if let (Some(k), Some(t)) = (s["key"].as_str(), s["last_pass"].as_u64()) {
                    out.insert(k.to_string(), t);
                }
            }
        }
    }
    out
}

fn in_sync(replicas: &[Replica]) -> usize {
    replicas
        .iter()
        .filter_map(|r| r.status_json())
        .map(|v| {
            v["stacks"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|s| s["mine"] == true && s["state"] == "in-sync")
                .count()
        })
        .sum()
}

/// Triggers a pass of every stack (a webhook to each replica) and waits
/// until each has passed again; returns the wall time.
fn timed_pass(replicas: &[Replica], stacks: usize) -> Duration {
    // `last_pass` has a resolution of a second: start on a fresh second.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    std::thread::sleep(Duration::from_nanos(
        1_000_000_000 - u64::from(now.subsec_nanos()),
    ));
    let t0 = now.as_secs() + 1;
    let start = Instant::now();
    for r in replicas {
        let _ = post_hook(&r.addr);
    }
    loop {
        let passes = last_passes(replicas);
        if passes.len() == stacks && passes.values().all(|t| *t >= t0) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "the pass did not complete"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn post_hook(addr: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    write!(
        s,
        "POST /hook HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let stacks = env_usize("PLIMSOLL_FLEET_STACKS", 50);
    let per_stack = env_usize("PLIMSOLL_FLEET_RELEASES", 20);
    // As the sync bench: Kubernetes 1.32 and the helm command line unless
    // told otherwise (PLIMSOLL_KUBE_VERSION=1.20, PLIMSOLL_BENCH_HELM=sdk).
    if std::env::var("PLIMSOLL_KUBE_VERSION").is_err() {
        plimsoll_testenv::KubeVersion::V1_32.select();
    }
    let sdk = std::env::var("PLIMSOLL_BENCH_HELM").as_deref() == Ok("sdk");
    let env = plimsoll_testenv::Env::discover()
        .expect("provision the test environment first: bash scripts/provision-test-env.sh");
    let cluster = plimsoll_testenv::Cluster::start(&env, "fleet")
        .await
        .expect("control plane");
    let client = cluster.client.clone();
    let repo = FleetRepo::new("fleet", 0);
    for i in 0..stacks {
        let ns = format!("fleet-s{i:02}");
        cluster.cp.namespace(&client, &ns).await.expect("namespace");
        let mut stack = format!("name: s{i:02}\nreleases:\n");
        for j in 0..per_stack {
            stack.push_str(&format!(
                "  - {{name: r{j:02}, chart: charts/cm, version: 1.0.0, namespace: {ns}, stage: apps, layers: [stacks/s{i:02}/r{j:02}.yaml]}}\n"
            ));
            repo.write(
                &format!("stacks/s{i:02}/r{j:02}.yaml"),
                &format!("message: s{i:02}-r{j:02}\n"),
            );
        }
        repo.write(&format!("stacks/s{i:02}/plimsoll.yaml"), &stack);
    }
    repo.commit("the fleet");
    println!(
        "{} releases in {stacks} stacks of {per_stack}, Kubernetes {}, helm being {}",
        stacks * per_stack,
        env.version.as_str(),
        if sdk {
            "the test front end over the Helm SDK"
        } else {
            "the helm command line (v4.1.4)"
        }
    );
    let logs = tempfile::tempdir().unwrap();
    let kc = cluster.cp.kubeconfig.clone();
    let helm = if sdk {
        cluster.cp.helm.clone()
    } else {
        cluster.cp.helm_cli.clone()
    };
    let start = |id: &str| {
        Replica::start(
            repo.path(),
            &kc,
            &helm,
            id,
            logs.path(),
            &[
                "--interval",
                "3600",
                "--lease-duration",
                "15",
                "--concurrency",
                "4",
            ],
        )
    };
    let replicas = vec![start("a"), start("b"), start("c")];
    let t = Instant::now();
    while in_sync(&replicas) < stacks {
        assert!(
            t.elapsed() < Duration::from_secs(3600),
            "install did not finish"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    println!(
        "install with 3 replicas: {:.1} s ({:.0} ms per release)",
        t.elapsed().as_secs_f64(),
        t.elapsed().as_secs_f64() * 1000.0 / (stacks * per_stack) as f64
    );
    measure("3 replicas", &replicas, stacks);
    drop(replicas);
    // One replica, all stacks (the others' leases expire first).
    let one = vec![start("solo")];
    let t = Instant::now();
    while in_sync(&one) < stacks {
        assert!(
            t.elapsed() < Duration::from_secs(600),
            "takeover did not finish"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    println!(
        "one replica took all {stacks} stacks over in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    measure("1 replica", &one, stacks);
}

fn measure(what: &str, replicas: &[Replica], stacks: usize) {
    let mut passes: Vec<f64> = (0..5)
        .map(|_| timed_pass(replicas, stacks).as_secs_f64())
        .collect();
    passes.sort_by(f64::total_cmp);
    println!(
        "{what}: reconcile pass of every stack, nothing to change: median {:.2} s (min {:.2}, max {:.2}, 5 passes)",
        passes[2], passes[0], passes[4]
    );
    for r in replicas {
        let pid = r.child.as_ref().map_or(0, |c| c.id());
        let (rss, peak) = rss_mb(pid);
        let held = r.held().map_or(0, |h| h.len());
        let cpu = http_get(&r.addr, "/metrics")
            .map(|(_, b)| {
                b.lines()
                    .filter(|l| l.starts_with("plimsoll_reconcile_pass_seconds{"))
                    .count()
            })
            .unwrap_or(0);
        println!(
            "  replica {}: {held} stacks, RSS {rss:.1} MB (peak {peak:.1} MB), {cpu} stacks reporting pass times",
            r.identity
        );
    }
}
