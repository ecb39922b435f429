//! Releases of one stage run side by side (`--concurrency N`), each
//! release's own steps in order, stages one after the other, on the real
//! control plane. A helm wrapper records when each `helm upgrade` starts
//! and ends (and fails the release it is told to): at most N at once, more
//! than one when N > 1; a failure stops new starts, the next stage never
//! starts; a sync killed with several releases half done resumes and
//! completes.

use std::path::Path;
use std::process::Output;

use plimsoll_testenv::{on_both_versions, Cluster, Env};

mod support;
use support::text;

const NS: &str = "parallel";
const APPS: usize = 6;

/// A stack of `APPS` releases of a tiny chart in stage `apps`, then one
/// in stage `after`; and a helm that logs its upgrades.
fn site(dir: &Path, real_helm: &Path) -> std::path::PathBuf {
    let w = |rel: &str, text: &str| {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    w(
        "charts/tiny/Chart.yaml",
        "apiVersion: v2\nname: tiny\nversion: 1.0.0\n",
    );
    w("charts/tiny/values.yaml", "message: hello\n");
    w(
        "charts/tiny/templates/all.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\ndata:\n  message: {{ .Values.message | quote }}\n---\n\
         apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{ .Release.Name }}\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {app: {{ .Release.Name }}}\n  template:\n    metadata:\n      labels: {app: {{ .Release.Name }}}\n    spec:\n      containers: [{name: main, image: registry.invalid/tiny:1}]\n",
    );
    let mut stack = String::from("name: parallel\nstages: [apps, after]\nreleases:\n");
    for i in 0..=APPS {
        let (name, stage) = if i < APPS {
            (format!("app{i}"), "apps")
        } else {
            ("last".to_string(), "after")
        };
        stack.push_str(&format!(
            "  - name: {name}\n    chart: charts/tiny\n    version: 1.0.0\n    namespace: {NS}\n    stage: {stage}\n    layers: [values.yaml]\n"
        ));
    }
    w("plimsoll.yaml", &stack);
    w("values.yaml", "message: v1\n");
    // `helm upgrade ... -- NAME CHART`: logs start and end with a clock,
    // sleeps a little so that overlaps show, fails $FAIL_RELEASE.
    let helm = dir.join("logging-helm");
    w(
        "logging-helm",
        &format!(
            "#!/bin/sh\nif [ \"$1\" = upgrade ]; then\n  rel=; seen=\n  for a; do\n    if [ -n \"$seen\" ] && [ -z \"$rel\" ]; then rel=$a; fi\n    [ \"$a\" = -- ] && seen=1\n  done\n  echo \"start $rel $(date +%s.%N)\" >> {log}\n  sleep 1\n  if [ -n \"$FAIL_RELEASE\" ] && [ \"$rel\" = \"$FAIL_RELEASE\" ]; then echo \"end $rel $(date +%s.%N)\" >> {log}; echo 'Error: told to fail' >&2; exit 1; fi\n  {real} \"$@\"; rc=$?\n  echo \"end $rel $(date +%s.%N)\" >> {log}\n  exit $rc\nfi\nexec {real} \"$@\"\n",
            log = dir.join("helm.log").display(),
            real = real_helm.display()
        ),
    );
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&helm)
        .status()
        .unwrap();
    helm
}

/// The most `helm upgrade`s running at once, from the log.
fn most_at_once(dir: &Path) -> usize {
    let log = std::fs::read_to_string(dir.join("helm.log")).unwrap_or_default();
    support::most_at_once(
        log.lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                let (kind, _, t) = (f.next()?, f.next()?, f.next()?.parse::<f64>().ok()?);
                Some((t, if kind == "start" { 1 } else { -1 }))
            })
            .collect(),
    )
}

fn upgraded(dir: &Path) -> Vec<String> {
    let log = std::fs::read_to_string(dir.join("helm.log")).unwrap_or_default();
    let mut v: Vec<String> = log
        .lines()
        .filter_map(|l| {
            l.strip_prefix("start ")
                .and_then(|r| r.split_whitespace().next())
        })
        .map(str::to_string)
        .collect();
    v.sort();
    v.dedup();
    v
}

fn run(cluster: &Cluster, dir: &Path, helm: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_plimsoll"))
        .current_dir(dir)
        .args(args)
        .arg("--kubeconfig")
        .arg(&cluster.cp.kubeconfig)
        .arg("--helm")
        .arg(helm)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

on_both_versions! {
async fn releases_of_a_stage_run_side_by_side_and_a_failure_stops_the_stage() {
    let Some(env) = Env::require() else {
        return;
    };
    let cluster = Cluster::start(&env, NS).await.expect("cluster");

    // At most N at once, and more than one.
    let repo = tempfile::tempdir().unwrap();
    let dir = repo.path();
    let helm = site(dir, &cluster.cp.helm);
    let o = run(&cluster, dir, &helm, &["sync", "--yes", "--concurrency", "3"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let most = most_at_once(dir);
    assert!((2..=3).contains(&most), "{most} upgrades at once: {}", text(&o));
    assert_eq!(upgraded(dir).len(), APPS + 1);
    // `last` (stage `after`) started after every upgrade of stage `apps` ended.
    let log = std::fs::read_to_string(dir.join("helm.log")).unwrap();
    let last_start = log.lines().position(|l| l.starts_with("start last ")).unwrap();
    let apps_ends = log.lines().enumerate().filter(|(_, l)| l.starts_with("end app")).map(|(i, _)| i).max().unwrap();
    assert!(last_start > apps_ends, "{log}");

    // A failure: no new starts in the stage, the next stage never starts.
    std::fs::write(dir.join("values.yaml"), "message: v2\n").unwrap();
    std::fs::remove_file(dir.join("helm.log")).unwrap();
    let o = run(&cluster, dir, &helm, &["sync", "--yes", "--concurrency", "2"], &[("FAIL_RELEASE", "app1")]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("told to fail"), "{}", text(&o));
    let started = upgraded(dir);
    assert!(started.contains(&"app1".to_string()), "{started:?}");
    assert!(!started.contains(&"last".to_string()), "the next stage never starts: {started:?}");
    assert!(started.len() <= 3, "no new starts after the failure: {started:?}");

    // Killed with several releases half done: the next sync resumes and
    // completes every release.
    std::fs::write(dir.join("values.yaml"), "message: v3\n").unwrap();
    std::fs::remove_file(dir.join("helm.log")).unwrap();
    let o = run(&cluster, dir, &helm, &["sync", "--yes", "--concurrency", "3"], &[("PLIMSOLL_FAULT_ABORT_AFTER", "helm-upgrade")]);
    assert_eq!(o.status.code(), None, "killed: {}", text(&o));
    let o = run(&cluster, dir, &helm, &["sync", "--yes", "--concurrency", "3"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("resuming plan"), "{}", text(&o));
    let o = run(&cluster, dir, &helm, &["plan"], &[]);
    assert_eq!(o.status.code(), Some(0), "every release at v3: {}", text(&o));
}
}
