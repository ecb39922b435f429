//! Helpers shared by the binary's end-to-end tests. Each test binary uses
//! a part of them.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// The most intervals open at once, from (time, +1 start / -1 end)
/// events in any order.
pub fn most_at_once(mut events: Vec<(f64, i32)>) -> usize {
    events.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let (mut now, mut most) = (0, 0);
    for (_, d) in events {
        now += d;
        most = most.max(now);
    }
    most as usize
}

/// Every descendant of `pid` (children first found through /proc).
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        // /proc/PID/stat: "pid (comm) state ppid ..."; comm may hold spaces.
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|x| x.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            parent_of.push((p, ppid));
        }
    }
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parent_of
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    found.remove(0);
    found
}

/// SIGKILL to a process and all its descendants at once, as a pod's death
/// takes every process of its containers (helm included).
pub fn kill_tree(child: &mut std::process::Child) {
    let mut pids = descendants(child.id());
    pids.insert(0, child.id());
    let _ = Command::new("kill")
        .arg("-KILL")
        .args(pids.iter().map(u32::to_string))
        .status();
    let _ = child.wait();
}

/// Copies a directory tree.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// Runs the `plimsoll` binary in `dir`.
pub fn plimsoll(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_plimsoll"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run plimsoll")
}

/// Commits every file of the working tree to HEAD; returns the commit id.
pub fn commit_all(repo: &git2::Repository, message: &str) -> String {
    let mut index = repo.index().unwrap();
    index
        .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
        .unwrap();
    index.write().unwrap();
    let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
    let sig = git2::Signature::now("test", "test@plimsoll.invalid").unwrap();
    let parents: Vec<git2::Commit> = repo
        .head()
        .ok()
        .and_then(|h| h.peel_to_commit().ok())
        .into_iter()
        .collect();
    let refs: Vec<&git2::Commit> = parents.iter().collect();
    repo.commit(Some("HEAD"), &sig, &sig, message, &tree, &refs)
        .unwrap()
        .to_string()
}

/// Compares `actual` with the golden file `fixtures/DIR/NAME`;
/// `UPDATE_EXPECT=1` rewrites it (review the diff).
pub fn golden(dir: &str, name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(dir)
        .join(name);
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{} missing; run with UPDATE_EXPECT=1", path.display()));
    assert_eq!(actual, expected, "differs from {}", path.display());
}

/// A finished command, for an assertion message: exit code, stdout, stderr.
/// A loopback address on a port free now (the OS picked it).
pub fn free_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("127.0.0.1:{}", listener.local_addr().unwrap().port())
}

pub fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Sets the `version:` of the chart directory `dir` (a test chart copied
/// from `fixtures/charts` serves as any version).
pub fn set_chart_version(dir: &Path, version: &str) {
    let chart = std::fs::read_to_string(dir.join("Chart.yaml")).unwrap();
    let chart: String = chart
        .lines()
        .map(|l| {
            if l.starts_with("version:") {
                format!("version: {version}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(dir.join("Chart.yaml"), chart).unwrap();
}

/// `plimsoll ARGS` in `dir` against a test control plane (its kubeconfig
/// and Helm engine), with `env` set.
pub fn plimsoll_on(
    cp: &plimsoll_testenv::ControlPlane,
    dir: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> Output {
    Command::new(env!("CARGO_BIN_EXE_plimsoll"))
        .current_dir(dir)
        .args(args)
        .args(["--kubeconfig", &cp.kubeconfig.display().to_string()])
        .args(["--helm", &cp.helm.display().to_string()])
        .envs(env.iter().copied())
        .output()
        .expect("run plimsoll")
}

/// The bundled example (profiles, overlays, site values) with the test
/// charts in place of the vendor's, releases in namespace `ns`; `patch`
/// adds the Percona patch to the data release.
pub fn example_repo(ns: &str, patch: bool) -> tempfile::TempDir {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    for d in ["profiles", "overlays", "site"] {
        copy_dir(&root.join(d), &dir.path().join(d));
    }
    copy_dir(
        &root.join("fixtures/charts/test-data-1.0.0"),
        &dir.path().join("charts/test-data"),
    );
    copy_dir(
        &root.join("fixtures/charts/test-app-1.0.0"),
        &dir.path().join("charts/test-app"),
    );
    let patches = if patch {
        "    patches:\n      - apiVersion: psmdb.percona.com/v1\n        kind: PerconaServerMongoDB\n        name: mongo\n        patch:\n          - {op: replace, path: /spec/enableVolumeExpansion, value: true}\n"
    } else {
        ""
    };
    let stack = format!(
        "name: example\nvariables:\n  segment: {{values: [m, l, xl], default: m}}\n  cloud: {{values: [aws, azure, gcp], default: aws}}\n\
         stages: [data, application]\nreleases:\n\
         \x20 - name: thingpark-data\n    chart: charts/test-data\n    version: 1.0.0\n    namespace: {ns}\n    stage: data\n    layers: &data-stack\n      - overlays/storage/${{cloud}}.yaml\n      - overlays/priority-class.yaml\n      - profiles/${{segment}}.yaml\n      - site/data-stack.yaml\n{patches}\
         \x20 - name: thingpark-enterprise\n    chart: charts/test-app\n    version: 1.0.0\n    namespace: {ns}\n    stage: application\n    layers:\n      - overlays/storage/${{cloud}}.yaml\n      - overlays/lb/${{cloud}}.yaml\n      - overlays/priority-class.yaml\n      - profiles/${{segment}}.yaml\n      - site/application-stack.yaml\n"
    );
    std::fs::write(dir.path().join("plimsoll.yaml"), stack).unwrap();
    dir
}

pub mod fleet;
