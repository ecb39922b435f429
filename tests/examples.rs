//! The worked examples in `examples/`: each renders (its committed outputs
//! are current) and plans against its snapshot through the real Helm
//! engine; the plans are golden files in `fixtures/examples/`
//! (`UPDATE_EXPECT=1` rewrites them after review).

use std::path::Path;

use plimsoll_testenv::{write_helm_command, Env};

mod support;
use support::plimsoll;

fn golden(name: &str, actual: &str) {
    support::golden("examples", name, actual)
}

#[test]
fn the_pravega_example_renders_and_plans_its_upgrade() {
    let Some(env) = Env::require() else { return };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let example = root.join("examples/pravega");
    let o = plimsoll(root, &["render", "--repo", "examples/pravega", "--check"]);
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );

    let dir = tempfile::tempdir().unwrap();
    let helm = write_helm_command(&env, &dir.path().join("helm"), None).unwrap();
    let plan = |version: &str, format: &str| {
        let set = format!("pravega={version}");
        let o = plimsoll(
            &example,
            &[
                "plan",
                "--set",
                &set,
                "--live",
                "snapshot.json",
                "--format",
                format,
                "--helm",
                helm.to_str().unwrap(),
            ],
        );
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            err,
        )
    };
    // The upgrade: the chart's values change, then the plan waits for the
    // operator (the application release, unchanged, has nothing to do).
    let (code, text, err) = plan("0.10.0", "text");
    assert_eq!(code, Some(2), "{text}{err}");
    assert!(
        text.contains("wait until ready: PravegaCluster/pravega"),
        "{text}"
    );
    golden("pravega-0.10.0.plan.txt", &text);
    let (_, md, _) = plan("0.10.0", "markdown");
    golden("pravega-0.10.0.plan.md", &md);
    // Back to 0.9.0: refused before any change.
    let (code, text, err) = plan("0.9.0", "text");
    assert_eq!(code, Some(1), "{text}{err}");
    assert!(
        text.contains(
            "REFUSED: pravega: PravegaCluster/pravega would be downgraded from 0.9.1 to 0.9.0"
        ),
        "{text}"
    );
    golden("pravega-0.9.0.plan.txt", &text);
    let (_, md, _) = plan("0.9.0", "markdown");
    golden("pravega-0.9.0.plan.md", &md);
}

#[test]
fn the_cstor_example_renders_and_plans_its_migration_in_phases() {
    let Some(env) = Env::require() else { return };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let example = root.join("examples/cstor-migration");
    let o = plimsoll(
        root,
        &["render", "--repo", "examples/cstor-migration", "--check"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let dir = tempfile::tempdir().unwrap();
    let helm = write_helm_command(&env, &dir.path().join("helm"), None).unwrap();
    let plan = |format: &str| {
        let o = plimsoll(
            &example,
            &[
                "plan",
                "--live",
                "snapshot.json",
                "--format",
                format,
                "--helm",
                helm.to_str().unwrap(),
            ],
        );
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
        )
    };
    let (code, text) = plan("text");
    assert_eq!(code, Some(2), "{text}");
    let add = text
        .find("phase 1 of 2: add poolName cspc-stripe-pool-node3")
        .expect(&text);
    let healthy = text.find("CStorVolume/pvc-").expect(&text);
    let remove = text
        .find("phase 2 of 2: remove poolName cspc-stripe-pool-node2")
        .expect(&text);
    assert!(add < healthy && healthy < remove, "{text}");
    golden("cstor-migration.plan.txt", &text);
    let (_, md) = plan("markdown");
    golden("cstor-migration.plan.md", &md);
}
