//! Charts where they live: a stack whose chart comes from a Helm chart
//! repository (static files over HTTPS with basic auth) or from an OCI
//! registry (Debian's docker-registry with htpasswd auth), both with TLS
//! from a test CA, planned and synced on the real control plane through
//! the real Helm engine. Wrong credentials, a credential for another URL
//! and a missing chart version are refused before any change; a chart is
//! pulled once per (source, version) and its digest is in the plan.
//!
//! The pulls do not depend on the Kubernetes version: these run on the
//! default control plane only.

use std::path::Path;
use std::process::Output;

use plimsoll_testenv::charts::{ChartRepository, OciRegistry};
use plimsoll_testenv::{Cluster, Env};

mod support;
use support::text;

const NS: &str = "charts";
const USER: &str = "plimsoll";
const PASSWORD: &str = "s3cret-Pa55";
const WRONG: &str = "not-the-password-42";

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/charts")
        .join(name)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A deployment repository whose one release takes `chart` at `version`
/// from the repository `repository` (the stack file's entry).
fn write_site(dir: &Path, repository: &str, chart: &str, version: &str, ca: &Path) {
    std::fs::create_dir_all(dir.join("certs")).unwrap();
    std::fs::copy(ca, dir.join("certs/ca.pem")).unwrap();
    std::fs::write(
        dir.join("app.yaml"),
        "twa:\n  replicaCount: 1\nlrc:\n  replicaCount: 1\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("plimsoll.yaml"),
        format!(
            "name: charts\nrepositories:\n{repository}\nstages: [application]\nreleases:\n\
             \x20 - name: app\n    chart: {chart}\n    version: {version}\n    namespace: {NS}\n    stage: application\n    layers: [app.yaml]\n"
        ),
    )
    .unwrap();
}

/// The chart version Helm recorded for release `app`, if installed.
fn installed(cluster: &Cluster, dir: &Path) -> Option<String> {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_plimsoll"))
        .current_dir(dir)
        .args(["snapshot", "-n", NS, "--kubeconfig"])
        .arg(&cluster.cp.kubeconfig)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let live: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    live["releases"]
        .as_array()?
        .iter()
        .find(|r| r["name"] == "app")
        .map(|r| r["version"].as_str().unwrap_or_default().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chart_from_a_helm_repository_with_basic_auth_and_tls() {
    let Some(env) = Env::require() else {
        return;
    };
    let repo = ChartRepository::start(&env, USER, PASSWORD).expect("chart repository");
    repo.publish(&fixture("test-app-1.0.0")).unwrap();
    let cluster = Cluster::start(&env, NS).await.expect("cluster");
    let site = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let dir = site.path();
    let entry = format!(
        "  - name: stable\n    url: {}\n    caFile: certs/ca.pem\n    credentials: {{env: PLIMSOLL_TEST_CHARTS}}",
        repo.url
    );
    write_site(dir, &entry, "stable/test-app", "1.0.0", &repo.ca);
    let cache_home = cache.path().display().to_string();
    let run = |args: &[&str], password: &str, url: &str| {
        support::plimsoll_on(
            &cluster.cp,
            dir,
            args,
            &[
                ("XDG_CACHE_HOME", cache_home.as_str()),
                ("PLIMSOLL_TEST_CHARTS_URL", url),
                ("PLIMSOLL_TEST_CHARTS_USERNAME", USER),
                ("PLIMSOLL_TEST_CHARTS_PASSWORD", password),
            ],
        )
    };

    // A wrong password: refused, said clearly, the password never shown.
    let o = run(&["sync", "--yes"], WRONG, &repo.url);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = stderr(&o);
    assert!(err.contains("cannot pull chart"), "{}", text(&o));
    assert!(
        err.contains("401") && err.contains("refused the credentials"),
        "{}",
        text(&o)
    );
    assert!(
        !format!("{}{err}", stdout(&o)).contains(WRONG),
        "{}",
        text(&o)
    );
    assert_eq!(installed(&cluster, dir), None, "nothing was installed");

    // A credential for another URL is never sent.
    let o = run(&["plan"], PASSWORD, "https://127.0.0.1:1/elsewhere");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        stderr(&o).contains("is for https://127.0.0.1:1/elsewhere, not for"),
        "{}",
        text(&o)
    );
    assert_eq!(repo.served("/charts/index.yaml"), 0, "{}", text(&o));

    // Planned from the repository, with the archive's digest.
    let o = run(&["plan"], PASSWORD, &repo.url);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let source = format!("from {}/test-app sha256:", repo.url);
    assert!(stdout(&o).contains(&source), "{}", text(&o));
    let o = run(&["plan", "--format", "json"], PASSWORD, &repo.url);
    let plan: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json plan");
    let digest = plan.to_string();
    assert!(digest.contains("\"digest\":\"sha256:"), "{digest}");

    let o = run(&["sync", "--yes"], PASSWORD, &repo.url);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(installed(&cluster, dir).as_deref(), Some("1.0.0"));
    // Pulled once for two plans and a sync: kept by digest.
    assert_eq!(repo.served("/charts/test-app-1.0.0.tgz"), 1);

    // A version the repository does not have: reported before any change.
    write_site(dir, &entry, "stable/test-app", "9.9.9", &repo.ca);
    let o = run(&["sync", "--yes"], PASSWORD, &repo.url);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        stderr(&o).contains("version 9.9.9")
            && stderr(&o).contains("does not have this chart version"),
        "{}",
        text(&o)
    );
    assert_eq!(installed(&cluster, dir).as_deref(), Some("1.0.0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chart_from_an_oci_registry_with_authentication() {
    let Some(env) = Env::require() else {
        return;
    };
    let registry = OciRegistry::start(&env, USER, PASSWORD).expect("docker-registry");
    registry.push(&fixture("test-app-1.0.0"), "charts").unwrap();
    registry.push(&fixture("test-app-1.1.0"), "charts").unwrap();
    let cluster = Cluster::start(&env, NS).await.expect("cluster");
    let site = tempfile::tempdir().unwrap();
    let secrets = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let dir = site.path();
    let url = format!("oci://{}/charts", registry.host);
    let credentials = |password: &str| {
        std::fs::write(
            secrets.path().join("registry"),
            format!("url: {url}\nusername: {USER}\npassword: {password}\n"),
        )
        .unwrap();
    };
    let entry = format!(
        "  - name: registry\n    url: {url}\n    caFile: certs/ca.pem\n    credentials: {{file: registry}}"
    );
    let cache_home = cache.path().display().to_string();
    let creds_dir = secrets.path().display().to_string();
    let run = |args: &[&str]| {
        support::plimsoll_on(
            &cluster.cp,
            dir,
            args,
            &[
                ("XDG_CACHE_HOME", cache_home.as_str()),
                ("PLIMSOLL_CREDENTIALS_DIR", creds_dir.as_str()),
            ],
        )
    };

    write_site(dir, &entry, "registry/test-app", "1.0.0", &registry.ca);
    credentials(WRONG);
    let o = run(&["plan"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        stderr(&o).contains("refused the credentials"),
        "{}",
        text(&o)
    );
    assert!(!stderr(&o).contains(WRONG), "{}", text(&o));

    credentials(PASSWORD);
    let o = run(&["sync", "--yes"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(installed(&cluster, dir).as_deref(), Some("1.0.0"));

    // The upgrade is planned from the registry, and applied.
    write_site(dir, &entry, "registry/test-app", "1.1.0", &registry.ca);
    let o = run(&["plan"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        stdout(&o).contains(&format!(
            "test-app 1.0.0 -> 1.1.0 from {url}/test-app sha256:"
        )),
        "{}",
        text(&o)
    );
    let o = run(&["sync", "--yes"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(installed(&cluster, dir).as_deref(), Some("1.1.0"));

    write_site(dir, &entry, "registry/test-app", "2.0.0", &registry.ca);
    let o = run(&["plan"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        stderr(&o).contains("does not have this chart version"),
        "{}",
        text(&o)
    );
}

/// The in-cluster daemon reads a repository's credentials from a Secret
/// of its namespace (keys url, username, password) and installs the chart
/// of the branch's commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_reads_repository_credentials_from_a_secret() {
    let Some(env) = Env::require() else {
        return;
    };
    let repo = ChartRepository::start(&env, USER, PASSWORD).expect("chart repository");
    repo.publish(&fixture("test-app-1.0.0")).unwrap();
    let cluster = Cluster::start(&env, NS).await.expect("cluster");
    let journal = cluster
        .cp
        .namespace(&cluster.client, "plimsoll")
        .await
        .unwrap();
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "chart-credentials", "namespace": journal},
        "stringData": {"url": repo.url, "username": USER, "password": PASSWORD},
    }))
    .unwrap();
    kube::Api::<k8s_openapi::api::core::v1::Secret>::namespaced(cluster.client.clone(), &journal)
        .create(&Default::default(), &secret)
        .await
        .unwrap();
    let site = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let dir = site.path();
    let entry = format!(
        "  - name: stable\n    url: {}\n    caFile: certs/ca.pem\n    credentials: {{secret: chart-credentials}}",
        repo.url
    );
    write_site(dir, &entry, "stable/test-app", "1.0.0", &repo.ca);
    let git = git2::Repository::init(dir).unwrap();
    git.set_head("refs/heads/main").unwrap();
    support::commit_all(&git, "from the chart repository");

    // Outside the daemon there is no Secret to read: said so.
    let o = support::plimsoll_on(&cluster.cp, dir, &["plan"], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        stderr(&o).contains("only by the in-cluster daemon"),
        "{}",
        text(&o)
    );

    let log = cache.path().join("daemon.log");
    let mut daemon = std::process::Command::new(env!("CARGO_BIN_EXE_plimsoll"))
        .current_dir(dir)
        .args([
            "daemon",
            "--branch",
            "main",
            "--interval",
            "300",
            "--kubeconfig",
        ])
        .arg(&cluster.cp.kubeconfig)
        .arg("--helm")
        .arg(&cluster.cp.helm)
        .env("XDG_CACHE_HOME", cache.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut version = None;
    for _ in 0..300 {
        version = installed(&cluster, dir);
        if version.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let _ = daemon.kill();
    let _ = daemon.wait();
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(version.as_deref(), Some("1.0.0"), "daemon log:\n{log}");
    assert!(!log.contains(PASSWORD), "{log}");
}
