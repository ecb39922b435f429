//! The daemon's status page in a real headless browser (Debian's
//! `chromium`), during a sync on the real control plane: the page shows
//! the stack syncing, step n of m, what the running step waits on and the
//! condition now, the plan being applied, links per release; then in
//! sync. A screenshot of each is kept in `target/test-artifacts/`.
//! Secrets of the values never reach the page.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use plimsoll_testenv::{on_both_versions, Cluster, Env};

mod support;
use support::fleet::{http_get, FleetRepo, Replica};

const NS: &str = "status";
const SECRET: &str = "hunter2-very-secret";

/// Chromium, headless, as root in a closed network (its background
/// connections off), with a profile of its own.
fn chromium(args: &[&str]) -> std::process::Output {
    let profile = tempfile::tempdir().unwrap();
    let o = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .output();
    match o {
        Ok(o) => o,
        Err(e) => panic!(
            "cannot run chromium ({e}): scripts/provision-test-env.sh installs Debian's chromium"
        ),
    }
}

/// The page's DOM as the browser built it.
fn dom(url: &str) -> String {
    let o = chromium(&["--dump-dom", url]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A screenshot of the page, kept as a test artifact.
fn screenshot(url: &str, name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    let o = chromium(&[
        &format!("--screenshot={}", path.display()),
        "--window-size=1280,1500",
        url,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let png = std::fs::read(&path).expect("the screenshot");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "a real picture"
    );
    eprintln!("screenshot: {}", path.display());
    path
}

/// A chart with a one-replica StatefulSet (its pod `NAME-0`) and a Secret
/// holding the values' password.
const CHART: &str = "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: {{ .Release.Name }}\nspec:\n  replicas: 1\n  serviceName: {{ .Release.Name }}\n  selector:\n    matchLabels: {app: {{ .Release.Name }}}\n  template:\n    metadata:\n      labels: {app: {{ .Release.Name }}}\n      annotations: {message: {{ .Values.message | quote }}}\n    spec:\n      containers: [{name: main, image: registry.invalid/web:1}]\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: {{ .Release.Name }}\nstringData:\n  password: {{ .Values.password | quote }}\n";

on_both_versions! {
async fn the_status_page_shows_a_running_sync_in_a_real_browser() {
    let Some(env) = Env::require() else { return };
    let cluster = Cluster::start(&env, NS).await.expect("control plane");
    let repo = FleetRepo::new(NS, 2);
    repo.write("charts/web/Chart.yaml", "apiVersion: v2\nname: web\nversion: 1.0.0\n");
    repo.write("charts/web/values.yaml", "message: hello\npassword: none\n");
    repo.write("charts/web/templates/all.yaml", CHART);
    repo.write(
        "stacks/web/plimsoll.yaml",
        "name: web\nstages: [data, apps]\nreleases:\n\
         \x20 - {name: web-db, chart: charts/web, version: 1.0.0, namespace: status, stage: data, layers: [stacks/web/db.yaml]}\n\
         \x20 - {name: web-app, chart: charts/web, version: 1.0.0, namespace: status, stage: apps, layers: [stacks/web/app.yaml]}\n",
    );
    repo.write("stacks/web/db.yaml", &format!("message: v1\npassword: {SECRET}\n"));
    repo.write("stacks/web/app.yaml", &format!("message: v1\npassword: {SECRET}\n"));
    repo.commit("a web stack");
    let logs = tempfile::tempdir().unwrap();
    let d = Replica::start(
        repo.path(),
        &cluster.cp.kubeconfig,
        &cluster.cp.helm,
        "page",
        logs.path(),
        &["--interval", "300", "--lease-duration", "6"],
    );
    let url = format!("http://{}/", d.status);
    // Installed first, everything ready.
    let start = Instant::now();
    while !d.log().contains("sync complete stack=web") {
        assert!(start.elapsed() < Duration::from_secs(120), "{}", d.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A commit to both releases; the database's pod stays unready, so the
    // sync waits on it.
    cluster.node.behaviour.lock().unwrap().keep_unready.insert("web-db-0".to_string());
    repo.write("stacks/web/db.yaml", &format!("message: v2\npassword: {SECRET}\n"));
    repo.write("stacks/web/app.yaml", &format!("message: v2\npassword: {SECRET}\n"));
    let commit = repo.commit("web to v2");
    let start = Instant::now();
    let mut page = String::new();
    while start.elapsed() < Duration::from_secs(90) {
        let (_, json) = http_get(&d.status, "/status.json").unwrap_or_default();
        if json.contains("\"waiting\": \"") && json.contains("web-db-0") || json.contains("statefulset/web-db") {
            page = dom(&url);
            if page.contains("waiting on:") {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let shot = screenshot(&url, &format!("status-page-syncing-{}.png", plimsoll_testenv::KubeVersion::current().as_str()));
    assert!(page.contains("data-state=\"syncing\""), "the stack is syncing: {page}");
    assert!(page.contains("Sync in progress"), "{page}");
    // Step n of m: the data stage's release waits; the app's has not started.
    assert!(page.contains("step ") && page.contains(" of 4"), "step n of m: {page}");
    assert!(page.contains("waiting on:"), "{page}");
    assert!(page.contains("statefulset/web-db"), "what it waits on: {page}");
    assert!(page.contains("Plan being applied"), "{page}");
    assert!(page.contains(&commit[..12]), "the commit: {page}");
    assert!(page.contains("helm upgrade --install web-app"), "the plan's steps: {page}");
    assert!(page.contains("href=\"#release--"), "links per release: {page}");
    assert!(page.contains("id=\"release--"), "{page}");
    assert!(!page.contains(SECRET), "a secret reached the page: {page}");
    // The other stacks (fleet ConfigMaps) are in sync meanwhile.
    assert!(page.matches("data-state=\"in sync\"").count() >= 2, "{page}");

    // The pod becomes ready: the sync completes, the page says so.
    cluster.node.behaviour.lock().unwrap().keep_unready.clear();
    let start = Instant::now();
    loop {
        page = dom(&url);
        if page.matches("data-state=\"in sync\"").count() == 3 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(90), "{page}\n{}", d.log());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(!page.contains("Sync in progress"), "{page}");
    assert!(page.contains(&format!("<code class=\"synced\">{commit}</code>")), "{page}");
    assert!(!page.contains(SECRET), "{page}");
    screenshot(&url, &format!("status-page-in-sync-{}.png", plimsoll_testenv::KubeVersion::current().as_str()));
    let json = http_get(&d.status, "/status.json").unwrap().1;
    assert!(!json.contains(SECRET), "{json}");
    eprintln!("kept {}", shot.display());
}
}
