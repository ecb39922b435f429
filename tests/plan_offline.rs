//! `plimsoll plan` from a snapshot file, no cluster: the stack file's release
//! catalog decides upgrade paths; downgrades are refused. `helm template`
//! runs through the real Helm engine (the test environment's front end).

use std::path::Path;
use std::process::{Command, Output};

use plimsoll_testenv::{write_helm_command, Env};

mod support;
use support::copy_dir;

fn plimsoll(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_plimsoll"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run plimsoll")
}

fn repo(version: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    copy_dir(
        &root.join("fixtures/charts/test-app-1.1.0"),
        &dir.path().join("charts/test-app"),
    );
    std::fs::write(dir.path().join("site.yaml"), "twa:\n  replicaCount: 2\n").unwrap();
    std::fs::write(
        dir.path().join("plimsoll.yaml"),
        format!(
            "releases:\n  - name: app\n    chart: charts/test-app\n    version: {version}\n    namespace: tp\n    stage: app\n    layers: [site.yaml]\ncatalog:\n  test-app: [1.0.0, 1.0.1, 1.1.0, 2.0.0]\n"
        ),
    )
    .unwrap();
    let live = r#"{"releases": [{"name": "app", "namespace": "tp", "chart": "test-app", "version": "1.0.1", "revision": 4,
        "status": "deployed", "values": {"twa": {"replicaCount": 2}}}],
      "statefulsets": [], "pvcs": [], "storage_classes": [], "deployments": []}"#;
    std::fs::write(dir.path().join("live.json"), live).unwrap();
    dir
}

#[test]
fn catalog_upgrade_paths_and_downgrades() {
    let Some(env) = Env::require() else { return };
    let cases = [
        ("1.0.1", 0, "No changes"),
        ("1.1.0", 2, "test-app 1.0.1 -> 1.1.0"),
        (
            "2.0.0",
            1,
            "REFUSED: app: upgrading 1.0.1 -> 2.0.0 skips the release path; upgrade to 1.1.0 first",
        ),
        (
            "1.0.0",
            1,
            "REFUSED: app: chart would be downgraded from 1.0.1 to 1.0.0",
        ),
    ];
    for (version, code, expected) in cases {
        let repo = repo(version);
        let helm = write_helm_command(&env, &repo.path().join("helm"), None).unwrap();
        let o = plimsoll(
            repo.path(),
            &[
                "plan",
                "--live",
                "live.json",
                "--helm",
                helm.to_str().unwrap(),
            ],
        );
        let out = String::from_utf8_lossy(&o.stdout);
        assert_eq!(
            o.status.code(),
            Some(code),
            "{version}: {out}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(out.contains(expected), "{version}: {out}");
    }
}
