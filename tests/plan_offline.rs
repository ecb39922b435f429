//! `plimsoll plan` from a snapshot file, no cluster: the stack file's release
//! catalog decides upgrade paths; downgrades are refused. `helm template`
//! runs through the real Helm engine (the test environment's front end).

use std::path::Path;
use std::process::Command;

use plimsoll_testenv::{write_helm_command, Env};

mod support;
use support::{copy_dir, plimsoll};

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

#[test]
fn helm_template_results_are_cached_by_chart_values_and_helm() {
    let Some(env) = Env::require() else { return };
    let repo = repo("1.1.0");
    let r = repo.path();
    let real = write_helm_command(&env, &r.join("real-helm"), None).unwrap();
    // A helm that logs each call, then runs the real one.
    let counting = r.join("helm");
    std::fs::write(
        &counting,
        format!(
            "#!/bin/sh\necho \"$1\" >> {}\nexec {} \"$@\"\n",
            r.join("calls.log").display(),
            real.display()
        ),
    )
    .unwrap();
    Command::new("chmod")
        .arg("+x")
        .arg(&counting)
        .status()
        .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let plan = || {
        let o = Command::new(env!("CARGO_BIN_EXE_plimsoll"))
            .current_dir(r)
            .env("XDG_CACHE_HOME", cache.path())
            .args(["plan", "--live", "live.json", "--helm"])
            .arg(&counting)
            .output()
            .unwrap();
        assert_eq!(
            o.status.code(),
            Some(2),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let calls = || {
        std::fs::read_to_string(r.join("calls.log"))
            .unwrap_or_default()
            .lines()
            .count()
    };
    let first = plan();
    assert_eq!(calls(), 1, "rendered once");
    assert_eq!(plan(), first, "the same plan from the cache");
    assert_eq!(calls(), 1, "not rendered again");
    // Other values: rendered again.
    std::fs::write(r.join("site.yaml"), "twa:\n  replicaCount: 3\n").unwrap();
    plan();
    assert_eq!(calls(), 2);
    // A changed chart file: rendered again.
    let t = r.join("charts/test-app/templates/twa.yaml");
    let text = std::fs::read_to_string(&t).unwrap() + "\n# edited\n";
    std::fs::write(&t, text).unwrap();
    plan();
    assert_eq!(calls(), 3);
}
