//! The daemon's Helm chart (`deploy/chart`): with its default values it
//! renders exactly the objects of the plain manifest
//! (`deploy/plimsoll-daemon.yaml`, which a cluster test applies and syncs
//! with), through the real Helm engine; with the webhook secret and
//! repository credentials set, it renders them as Secrets, mounted.

use std::path::Path;

use plimsoll_testenv::{write_helm_command, Env};
use serde_json::Value;

mod support;

fn objects(yaml: &[u8]) -> Vec<Value> {
    let mut out: Vec<Value> = plimsoll_yaml::parse_documents(yaml, 0)
        .unwrap()
        .iter()
        .map(|d| d.unwrap_document())
        .filter(|n| !n.is_null())
        .map(|n| serde_json::from_str(&plimsoll_yaml::json::to_json(n).unwrap()).unwrap())
        .collect();
    let key = |v: &Value| {
        format!(
            "{}/{}/{}",
            v["kind"].as_str().unwrap_or(""),
            v["metadata"]["namespace"].as_str().unwrap_or(""),
            v["metadata"]["name"].as_str().unwrap_or("")
        )
    };
    out.sort_by_key(key);
    out
}

fn template(env: &Env, dir: &Path, values: Option<&str>) -> Vec<Value> {
    let helm = write_helm_command(env, &dir.join("helm"), None).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cmd = std::process::Command::new(helm);
    cmd.args(["template", "-n", "plimsoll"]);
    if let Some(v) = values {
        std::fs::write(dir.join("values.yaml"), v).unwrap();
        cmd.arg("-f").arg(dir.join("values.yaml"));
    }
    let o = cmd
        .arg("--")
        .arg("plimsoll")
        .arg(root.join("deploy/chart"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", support::text(&o));
    objects(&o.stdout)
}

#[test]
fn the_chart_renders_the_plain_manifest() {
    let Some(env) = Env::require() else { return };
    let dir = tempfile::tempdir().unwrap();
    let rendered = template(&env, dir.path(), None);
    let plain = objects(
        &std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/plimsoll-daemon.yaml"))
            .unwrap(),
    );
    assert_eq!(rendered.len(), plain.len());
    for (r, p) in rendered.iter().zip(&plain) {
        assert_eq!(
            r, p,
            "deploy/chart renders this differently from deploy/plimsoll-daemon.yaml"
        );
    }
}

#[test]
fn the_webhook_secret_and_repository_credentials_become_secrets() {
    let Some(env) = Env::require() else { return };
    let dir = tempfile::tempdir().unwrap();
    let rendered = template(
        &env,
        dir.path(),
        Some(
            "webhook: {create: true, value: hook-secret}\nreplicas: 2\nreleaseNamespaces: [a, b]\n\
             chartCredentials:\n  - {name: plimsoll-chart-credentials, url: 'https://charts.example.com', username: u, password: p}\n",
        ),
    );
    let find = |kind: &str, name: &str| {
        rendered
            .iter()
            .filter(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        find("Secret", "plimsoll-webhook")[0]["stringData"]["secret"],
        "hook-secret"
    );
    assert_eq!(
        find("Secret", "plimsoll-chart-credentials")[0]["stringData"]["url"],
        "https://charts.example.com"
    );
    assert_eq!(
        find("Role", "plimsoll-releases").len(),
        2,
        "a Role per release namespace"
    );
    let d = &find("Deployment", "plimsoll")[0];
    assert_eq!(d["spec"]["replicas"], 2);
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert!(c["args"].as_array().unwrap().contains(&Value::from(
        "--webhook-secret-file=/etc/plimsoll/webhook/secret"
    )));
    assert_eq!(
        d["spec"]["template"]["spec"]["volumes"][2]["secret"]["secretName"],
        "plimsoll-webhook"
    );
}

/// Several repositories: a ConfigMap the daemon reads with `--config`
/// (parsed here by the daemon's own parser), mounted; the status page off.
#[test]
fn several_repositories_become_the_daemons_config_file() {
    let Some(env) = Env::require() else { return };
    let dir = tempfile::tempdir().unwrap();
    let rendered = template(
        &env,
        dir.path(),
        Some(
            "replicas: 3\nstatusPage: {enabled: false}\nrepositories:\n\
             \x20 - {url: 'https://git.example.org/a.git', branch: main, stacks: ['stacks/*/plimsoll.yaml']}\n\
             \x20 - {url: 'https://git.example.org/b.git', set: {segment: l}}\n",
        ),
    );
    let config = rendered
        .iter()
        .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == "plimsoll-repositories")
        .expect("the ConfigMap");
    let text = config["data"]["repositories.yaml"].as_str().unwrap();
    let repos = plimsoll_daemon::config::parse_config("repositories.yaml", text.as_bytes())
        .unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(repos.len(), 2);
    assert_eq!(repos[0].stacks, ["stacks/*/plimsoll.yaml"]);
    assert_eq!(repos[1].set, [("segment".to_string(), "l".to_string())]);
    let d = rendered.iter().find(|o| o["kind"] == "Deployment").unwrap();
    let args: Vec<&str> = d["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        args.contains(&"--config=/etc/plimsoll/config/repositories.yaml"),
        "{args:?}"
    );
    assert!(args.contains(&"--no-status-page"), "{args:?}");
    assert!(!args.iter().any(|a| a.starts_with("--url")), "{args:?}");
    assert!(args.contains(&"--identity=$(POD_NAME)"), "{args:?}");
}
