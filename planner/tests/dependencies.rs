//! Architecture invariant: the planner is pure. Its dependency tree (normal
//! and build dependencies, as Cargo resolves them) holds no Kubernetes
//! client, async runtime, git or HTTP crate, so nothing can make planning
//! do I/O, and planner tests build none of them.

use std::process::Command;

const FORBIDDEN: [&str; 7] = [
    "kube",
    "kube-client",
    "k8s-openapi",
    "tokio",
    "git2",
    "hyper",
    "reqwest",
];

#[test]
fn the_planner_depends_on_no_kube_tokio_git2_or_hyper() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let out = Command::new(cargo)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "tree",
            "-p",
            "plimsoll-planner",
            "-e",
            "normal,build",
            "--prefix",
            "none",
            "--locked",
            "--offline",
        ])
        .output()
        .expect("cargo tree");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    let crates: Vec<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(crates.contains(&"plimsoll-planner"), "{tree}");
    assert!(crates.contains(&"serde_json"), "the tree was read: {tree}");
    let found: Vec<&&str> = FORBIDDEN.iter().filter(|f| crates.contains(f)).collect();
    assert!(
        found.is_empty(),
        "the planner must stay pure, but depends on {found:?}:\n{tree}"
    );
}
