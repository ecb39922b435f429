//! `plimsoll sync` at scale on the real test control plane: 110 releases of
//! a small chart (a ConfigMap and a one-replica Deployment), then a plan
//! and a sync with nothing to change, then a plan (with the manifest diffs
//! of the 10 changed releases) and a sync where 10 releases change values;
//! all of it at `--concurrency 1` and `--concurrency 4`, each in a
//! namespace of its own.
//! Prints wall and CPU time in total and per release.
//!
//! ```sh
//! bash scripts/provision-test-env.sh && cargo bench --bench sync
//! ```
//!
//! By default: Kubernetes 1.32 (`PLIMSOLL_KUBE_VERSION=1.20` for the
//! other), the helm command line (`PLIMSOLL_BENCH_HELM=sdk`: the tests'
//! front end over the Helm SDK), kube-controller-manager at 200 requests
//! a second (`PLIMSOLL_BENCH_KCM_QPS=N` or `default`), concurrency 1 then 4
//! (`PLIMSOLL_BENCH_CONCURRENCY=4`: only 4).
//!
//! Not criterion: one iteration takes minutes (a cluster, 110 Helm
//! installs). For scale, Flux's published benchmark reconciles 100
//! HelmReleases in 27 s with 190 MiB of memory.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

const RELEASES: usize = 110;
const CHANGED: usize = 10;

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// CPU seconds (user + system) of a process so far, from /proc (`self`
/// for this one: the node and storage stand-ins run in it).
fn process_cpu(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (t(11) + t(12)) / 100.0
}

/// CPU of the control plane's processes (etcd, kube-apiserver,
/// kube-controller-manager) and of this process (the stand-ins).
fn cluster_cpu(pids: &[u32]) -> (f64, f64) {
    (
        pids.iter().map(|p| process_cpu(&p.to_string())).sum(),
        process_cpu("self"),
    )
}

/// Children's CPU seconds (user + system) so far, from /proc.
fn children_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // cutime and cstime are fields 16 and 17; `rest` starts at field 3.
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (t(13) + t(14)) / 100.0
}

struct Run {
    wall: f64,
    cpu: f64,
    /// CPU of the control plane, and of the node and storage stand-ins.
    cluster_cpu: (f64, f64),
    peak_rss_kb: u64,
    stdout: String,
}

/// Runs plimsoll under `/usr/bin/time -v` when available (peak RSS).
fn plimsoll(repo: &Path, kubeconfig: &Path, helm: &Path, pids: &[u32], args: &[&str]) -> Run {
    let time = Path::new("/usr/bin/time");
    let mut cmd = if time.exists() {
        let mut c = Command::new(time);
        c.arg("-v").arg(env!("CARGO_BIN_EXE_plimsoll"));
        c
    } else {
        Command::new(env!("CARGO_BIN_EXE_plimsoll"))
    };
    cmd.current_dir(repo)
        .args(args)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--helm")
        .arg(helm);
    let cpu0 = children_cpu();
    let cluster0 = cluster_cpu(pids);
    let start = Instant::now();
    let o = cmd.output().unwrap();
    let wall = start.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&o.stderr);
    // `plan` exits 2 when there are changes.
    assert!(
        o.status.success() || (args[0] == "plan" && o.status.code() == Some(2)),
        "{args:?}: {stderr}"
    );
    let peak_rss_kb = stderr
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Maximum resident set size (kbytes): ")
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let cluster1 = cluster_cpu(pids);
    Run {
        wall,
        cpu: children_cpu() - cpu0,
        cluster_cpu: (cluster1.0 - cluster0.0, cluster1.1 - cluster0.1),
        peak_rss_kb,
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
    }
}

fn report(what: &str, r: &Run) {
    println!(
        "{what:<44} wall {:>7.2} s ({:>6.1} ms/release)  CPU: plimsoll+helm {:>6.2} s, control plane {:>6.2} s, stand-ins {:>5.2} s  peak RSS of the largest of plimsoll and its helm processes {:>6.1} MB",
        r.wall,
        r.wall * 1000.0 / RELEASES as f64,
        r.cpu,
        r.cluster_cpu.0,
        r.cluster_cpu.1,
        r.peak_rss_kb as f64 / 1024.0
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes --bench; anything else (e.g. `cargo test`) skips.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    // The current control plane unless told otherwise
    // (PLIMSOLL_KUBE_VERSION=1.20).
    if std::env::var("PLIMSOLL_KUBE_VERSION").is_err() {
        plimsoll_testenv::KubeVersion::V1_32.select();
    }
    let mut env = plimsoll_testenv::Env::discover()
        .expect("provision the test environment first: bash scripts/provision-test-env.sh");
    // With Kubernetes' default client rate for kube-controller-manager (20
    // requests a second) the install measures the controller manager: each
    // Deployment costs it about five requests, so about four releases a
    // second come up whatever runs helm. 200 (as large clusters set it)
    // unless PLIMSOLL_BENCH_KCM_QPS says otherwise (`default`: Kubernetes'
    // own).
    env.controller_manager_qps = match std::env::var("PLIMSOLL_BENCH_KCM_QPS").as_deref() {
        Ok("default") => None,
        Ok(n) => Some(
            n.parse()
                .expect("PLIMSOLL_BENCH_KCM_QPS: a number or `default`"),
        ),
        Err(_) => Some(200),
    };
    let cluster = plimsoll_testenv::Cluster::start(&env, "bench")
        .await
        .expect("control plane");
    // The helm command line production runs, unless told to use the
    // tests' front end over the Helm SDK.
    let sdk = std::env::var("PLIMSOLL_BENCH_HELM").as_deref() == Ok("sdk");
    let kc = cluster.cp.kubeconfig.clone();
    let helm = if sdk {
        cluster.cp.helm.clone()
    } else {
        cluster.cp.helm_cli.clone()
    };
    let engine = if sdk {
        "the test front end over the Helm SDK"
    } else {
        "the helm command line (v4.1.4)"
    };
    println!("{RELEASES} releases of a ConfigMap + one-replica Deployment chart, helm being {engine}, Kubernetes {}, kube-controller-manager at {} requests/s", env.version.as_str(), env.controller_manager_qps.map_or("the default 20".to_string(), |q| q.to_string()));
    let levels = std::env::var("PLIMSOLL_BENCH_CONCURRENCY").unwrap_or_else(|_| "1,4".into());
    for concurrency in levels.split(',') {
        cluster
            .cp
            .namespace(&cluster.client, &format!("bench-c{concurrency}"))
            .await
            .expect("namespace");
        println!("--concurrency {concurrency}");
        run_at(&kc, &helm, &cluster.cp.pids(), concurrency);
    }
}

/// The whole sequence with `--concurrency N`, in a namespace of its own.
fn run_at(kc: &Path, helm: &Path, pids: &[u32], concurrency: &str) {
    let (kc, helm) = (kc.to_path_buf(), helm.to_path_buf());
    let sync = ["sync", "--yes", "--concurrency", concurrency];
    let repo = tempfile::tempdir().unwrap();
    let r = repo.path();
    write(
        r,
        "charts/tiny/Chart.yaml",
        "apiVersion: v2\nname: tiny\nversion: 1.0.0\n",
    );
    write(r, "charts/tiny/values.yaml", "message: hello\n");
    write(
        r,
        "charts/tiny/templates/all.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\ndata:\n  message: {{ .Values.message | quote }}\n---\n\
         apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{ .Release.Name }}\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {app: {{ .Release.Name }}}\n  template:\n    metadata:\n      labels: {app: {{ .Release.Name }}}\n      annotations: {message: {{ .Values.message | quote }}}\n    spec:\n      containers: [{name: main, image: registry.invalid/tiny:1}]\n",
    );
    let mut stack = format!("name: bench-c{concurrency}\nreleases:\n");
    for i in 0..RELEASES {
        stack.push_str(&format!(
            "  - name: r{i:03}\n    chart: charts/tiny\n    version: 1.0.0\n    namespace: bench-c{concurrency}\n    stage: apps\n    layers: [values/r{i:03}.yaml]\n"
        ));
        write(r, &format!("values/r{i:03}.yaml"), "message: v1\n");
    }
    write(r, "plimsoll.yaml", &stack);

    let install = plimsoll(r, &kc, &helm, pids, &sync);
    report("install (sync from nothing)", &install);
    let plan = plimsoll(r, &kc, &helm, pids, &["plan"]);
    report("plan, nothing to change", &plan);
    assert!(plan.stdout.contains("No changes"), "{}", plan.stdout);
    let idle = plimsoll(r, &kc, &helm, pids, &sync);
    report("sync, nothing to change", &idle);
    for i in 0..CHANGED {
        write(r, &format!("values/r{:03}.yaml", i * 11), "message: v2\n");
    }
    // The plan a reviewer reads: each changed release with its manifest
    // diff (against the manifest stored with the deployed release), every
    // release's live objects compared with it.
    let reviewed = plimsoll(r, &kc, &helm, pids, &["plan"]);
    report(
        &format!("plan, {CHANGED} changed (manifest diffs)"),
        &reviewed,
    );
    assert_eq!(
        reviewed
            .stdout
            .matches("objects (against the deployed release's manifest)")
            .count(),
        CHANGED,
        "{}",
        reviewed.stdout
    );
    let changed = plimsoll(r, &kc, &helm, pids, &sync);
    report(
        &format!("sync, {CHANGED} releases with a values change"),
        &changed,
    );
    assert!(
        changed.stdout.contains(&format!("{CHANGED} helm-upgrade")),
        "{}",
        changed.stdout
    );
}
