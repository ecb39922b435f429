//! Platform releases (seed 001) on the real control plane: a stack of two
//! charts whose versions come from a release manifest. The major step to
//! 8.0.0 is refused from 7.3.4 (not the latest 7.3) and taken from 7.3.6;
//! a sync killed between the two charts leaves a mixed cluster that `plan`
//! reports and the next sync completes.

use std::path::PathBuf;
use std::process::{Command, Output};

use plimsoll_testenv::{on_both_versions, Cluster, Env};

mod support;
use support::{copy_dir, text};

const NS: &str = "thingpark";

/// The manifest: chart versions per platform release (the test charts'
/// versions rewritten to these).
const MANIFEST: &str = concat!(
    "releases:\n",
    "  - version: 7.3.4\n    charts: {test-data: 1.0.0, test-app: 1.0.0}\n",
    "  - version: 7.3.6\n    charts: {test-data: 1.0.0, test-app: 1.0.1}\n",
    "  - version: 8.0.0\n    charts: {test-data: 1.1.0, test-app: 1.1.0}\n",
);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

struct Site {
    cluster: Cluster,
    repo: tempfile::TempDir,
}

impl Site {
    async fn start() -> Option<Site> {
        let env = Env::require()?;
        let cluster = Cluster::start(&env, NS).await.expect("cluster");
        let repo = tempfile::tempdir().unwrap();
        let w = |rel: &str, text: &str| {
            let p = repo.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        w("releases.yaml", MANIFEST);
        w(
            "data.yaml",
            "mariadb-galera:\n  replicaCount: 1\n  persistence:\n    size: 10Gi\nmongo-replicaset:\n  replicaCount: 1\n  persistence:\n    size: 25Gi\n",
        );
        w(
            "app.yaml",
            "twa:\n  replicaCount: 1\nlrc:\n  replicaCount: 1\n",
        );
        w(
            "plimsoll.yaml",
            &format!(
                "name: platform\nvariables:\n  release: {{values: ['7.3.4', '7.3.6', '8.0.0'], default: '7.3.4'}}\n\
                 platform: {{manifest: releases.yaml, variable: release}}\nstages: [data, application]\nreleases:\n\
                 \x20 - name: thingpark-data\n    chart: charts/test-data\n    namespace: {NS}\n    stage: data\n    layers: [data.yaml]\n\
                 \x20 - name: thingpark-enterprise\n    chart: charts/test-app\n    namespace: {NS}\n    stage: application\n    layers: [app.yaml]\n"
            ),
        );
        Some(Site { cluster, repo })
    }

    /// Puts the charts of `release` in place (a local chart directory is
    /// one version: the manifest's).
    fn charts_of(&self, release: &str) {
        let (data, app) = match release {
            "7.3.4" => ("1.0.0", "1.0.0"),
            "7.3.6" => ("1.0.0", "1.0.1"),
            _ => ("1.1.0", "1.1.0"),
        };
        for (name, fixture, version) in [
            (
                "test-data",
                if data == "1.1.0" {
                    "test-data-1.1.0"
                } else {
                    "test-data-1.0.0"
                },
                data,
            ),
            (
                "test-app",
                if app == "1.1.0" {
                    "test-app-1.1.0"
                } else {
                    "test-app-1.0.0"
                },
                app,
            ),
        ] {
            let dir = self.repo.path().join("charts").join(name);
            let _ = std::fs::remove_dir_all(&dir);
            copy_dir(&root().join("fixtures/charts").join(fixture), &dir);
            support::set_chart_version(&dir, version);
        }
    }

    fn plimsoll(&self, release: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
        let set = format!("release={release}");
        let args: Vec<&str> = args
            .iter()
            .copied()
            .chain(["--set", set.as_str()])
            .collect();
        support::plimsoll_on(&self.cluster.cp, self.repo.path(), &args, env)
    }

    fn sync(&self, release: &str, env: &[(&str, &str)]) -> Output {
        self.charts_of(release);
        self.plimsoll(release, &["sync", "--yes"], env)
    }

    fn plan(&self, release: &str) -> Output {
        self.charts_of(release);
        self.plimsoll(release, &["plan"], &[])
    }

    /// The chart version of each release, as Helm recorded it (through
    /// `plimsoll snapshot`, which reads the release Secrets).
    async fn versions(&self) -> Vec<String> {
        let o = Command::new(env!("CARGO_BIN_EXE_plimsoll"))
            .current_dir(self.repo.path())
            .args(["snapshot", "-n", NS])
            .args([
                "--kubeconfig",
                &self.cluster.cp.kubeconfig.display().to_string(),
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        let live: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        ["thingpark-data", "thingpark-enterprise"]
            .iter()
            .map(|name| {
                live["releases"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|r| r["name"] == *name)
                    .map(|r| {
                        format!(
                            "{}-{}",
                            r["chart"].as_str().unwrap(),
                            r["version"].as_str().unwrap()
                        )
                    })
                    .unwrap_or_default()
            })
            .collect()
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

on_both_versions! {
/// 7.3.4 -> 8.0.0 is refused (the major step starts from the latest 7.3,
/// 7.3.6); from 7.3.6 it is planned, shown as the platform move, and a
/// sync killed after the data chart's upgrade is completed by the next.
async fn a_major_platform_step_only_from_the_latest_release_and_an_interrupted_one_completes() {
    let Some(site) = Site::start().await else {
        return;
    };
    let o = site.sync("7.3.4", &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(site.versions().await, ["test-data-1.0.0", "test-app-1.0.0"]);

    let o = site.plan("8.0.0");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        stdout(&o).contains("REFUSED: platform release 7.3.4 -> 8.0.0 is a major upgrade, which must start from the latest release of the previous line: upgrade to 7.3.6 first"),
        "{}",
        text(&o)
    );
    let o = site.sync("8.0.0", &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(site.versions().await, ["test-data-1.0.0", "test-app-1.0.0"], "nothing changed");

    let o = site.sync("7.3.6", &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(site.versions().await, ["test-data-1.0.0", "test-app-1.0.1"]);

    let o = site.plan("8.0.0");
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(stdout(&o).starts_with("Platform release 7.3.6 -> 8.0.0\n"), "{}", text(&o));

    // Killed after the first chart's upgrade: the cluster is between two
    // platform releases.
    let o = site.sync("8.0.0", &[("PLIMSOLL_FAULT_ABORT_AFTER", "helm-upgrade")]);
    assert_eq!(o.status.code(), None, "killed by a signal: {}", text(&o));
    assert_eq!(site.versions().await, ["test-data-1.1.0", "test-app-1.0.1"]);
    let o = site.plan("7.3.6");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        stdout(&o).contains("the cluster runs charts of more than one platform release (test-data 1.1.0 (as in 8.0.0); test-app 1.0.1 (as in 7.3.6))"),
        "{}",
        text(&o)
    );
    let o = site.plan("8.0.0");
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        stdout(&o).contains("Platform release 7.3.6 -> 8.0.0 (completing an interrupted move)"),
        "{}",
        text(&o)
    );
    let o = site.sync("8.0.0", &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("resuming plan"),
        "the interrupted sync's journal is resumed: {}",
        text(&o)
    );
    assert_eq!(site.versions().await, ["test-data-1.1.0", "test-app-1.1.0"]);
    let o = site.plan("8.0.0");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}
}
