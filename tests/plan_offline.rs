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

/// The values corpus with secrets in every position (new blocks, removed
/// ones, lists, `name`/`value` items, credentials inside text, a stack
/// `redact:` pattern, declared patch values), old and new sides: no secret
/// appears in any plan format, with or without `--base`.
#[test]
fn no_secret_appears_in_any_plan_format() {
    let Some(env) = Env::require() else { return };
    let repo = repo("1.0.1");
    let r = repo.path();
    let helm = write_helm_command(&env, &r.join("helm"), None).unwrap();
    let site = |v: &str| {
        format!(
            "twa:\n  replicaCount: 2\n\
             database: {{password: db-pw-{v}, host: db}}\n\
             tls: {{key: tls-key-{v}}}\n\
             auth: {{rootPassword: root-pw-{v}}}\n\
             env:\n  - {{name: DB_PASSWORD, value: env-pw-{v}}}\n  - {{name: MODE, value: fast}}\n\
             kafka:\n  config:\n    sasl.jaas.config: 'ScramLoginModule required username=\"u\" password=\"jaas-pw-{v}\";'\n\
             mongo: {{uri: 'mongodb://admin:url-pw-{v}@mongo:27017/db'}}\n\
             my.cnf: |\n  [client]\n  password = cnf-pw-{v}\n  port = 3306\n\
             bundle: |\n  -----BEGIN PRIVATE KEY-----\n  pem-{v}\n  -----END PRIVATE KEY-----\n\
             custom: {{licence: licence-{v}}}\n"
        )
    };
    let stack = std::fs::read_to_string(r.join("plimsoll.yaml")).unwrap();
    let stack = stack.replace("    layers: [site.yaml]\n", "    layers: [site.yaml]\n    patches:\n      - {apiVersion: v1, kind: ConfigMap, name: app-config, patch: [{op: add, path: /data/password, value: patch-pw-new}, {op: add, path: /data/conn, value: 'https://u:patch-url-new@h/'}]}\n")
        + "redact: [licence]\n";
    std::fs::write(r.join("plimsoll.yaml"), stack).unwrap();
    std::fs::write(r.join("site.yaml"), site("old")).unwrap();
    let git = git2::Repository::init(r).unwrap();
    support::commit_all(&git, "old secrets");
    std::fs::write(r.join("site.yaml"), site("new")).unwrap();
    // The cluster runs the old values; the patched ConfigMap exists.
    let old: serde_json::Value = serde_json::json!({
        "twa": {"replicaCount": 2},
        "auth": {"rootPassword": "root-pw-old"},
        "database": {"password": "db-pw-old", "host": "db"},
        "env": [{"name": "DB_PASSWORD", "value": "env-pw-old"}],
        "mongo": {"uri": "mongodb://admin:url-pw-old@mongo:27017/db"}
    });
    let live = serde_json::json!({
        "releases": [{"name": "app", "namespace": "tp", "chart": "test-app", "version": "1.0.1",
            "revision": 4, "status": "deployed", "values": old}],
        "statefulsets": [], "pvcs": [], "storage_classes": [], "deployments": [],
        "resources": [{"api_version": "v1", "kind": "ConfigMap", "namespace": "tp", "name": "app-config",
            "object": {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "app-config", "namespace": "tp"}, "data": {"password": "patch-pw-old"}}}]
    });
    std::fs::write(r.join("live.json"), live.to_string()).unwrap();
    let secrets: Vec<String> = [
        "db-pw", "tls-key", "root-pw", "env-pw", "jaas-pw", "url-pw", "cnf-pw", "pem", "licence",
    ]
    .iter()
    .flat_map(|s| [format!("{s}-old"), format!("{s}-new")])
    .chain(["patch-pw-new", "patch-pw-old", "patch-url-new"].map(String::from))
    .collect();
    for format in ["text", "markdown", "json"] {
        let o = plimsoll(
            r,
            &[
                "plan",
                "--live",
                "live.json",
                "--base",
                "HEAD",
                "--format",
                format,
                "--helm",
                helm.to_str().unwrap(),
            ],
        );
        let out = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(o.status.code(), Some(2), "{format}: {out}");
        assert!(out.contains("(redacted"), "{format}: {out}");
        for s in &secrets {
            assert!(!out.contains(s.as_str()), "{format}: {s} shown:\n{out}");
        }
    }
}

/// A packaged chart (`.tgz`) committed in the deployment repository is
/// read at `--rev` as a chart directory is: the working tree's copy (here
/// another chart, then none) does not matter.
#[test]
fn a_packaged_chart_is_read_at_the_revision() {
    let Some(env) = Env::require() else { return };
    let repo = repo("1.1.0");
    let r = repo.path();
    let helm = write_helm_command(&env, &r.join("helm"), None).unwrap();
    let run = |args: &[&str]| {
        Command::new(&helm)
            .args(args)
            .current_dir(r)
            .output()
            .unwrap()
    };
    let o = run(&[
        "package",
        "--destination",
        "packaged",
        "--",
        "charts/test-app",
    ]);
    assert!(o.status.success(), "{}", support::text(&o));
    std::fs::rename(
        r.join("packaged/test-app-1.1.0.tgz"),
        r.join("test-app.tgz"),
    )
    .unwrap();
    std::fs::remove_dir_all(r.join("charts")).unwrap();
    std::fs::remove_dir_all(r.join("packaged")).unwrap();
    let stack = std::fs::read_to_string(r.join("plimsoll.yaml")).unwrap();
    std::fs::write(
        r.join("plimsoll.yaml"),
        stack.replace("chart: charts/test-app", "chart: test-app.tgz"),
    )
    .unwrap();
    std::fs::write(r.join(".gitignore"), "helm\n").unwrap();
    let git = git2::Repository::init(r).unwrap();
    support::commit_all(&git, "a packaged chart");
    let plan = |rev: Option<&str>| {
        let mut args = vec![
            "plan",
            "--live",
            "live.json",
            "--helm",
            helm.to_str().unwrap(),
        ];
        if let Some(rev) = rev {
            args.extend(["--rev", rev]);
        }
        plimsoll(r, &args)
    };
    let expected = "wait until ready: statefulset/lrc, deployment/twa";
    let o = plan(None);
    assert_eq!(o.status.code(), Some(2), "{}", support::text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(expected),
        "{}",
        support::text(&o)
    );

    // The working tree's archive replaced by a chart without workloads,
    // then removed: the revision's archive is the one rendered.
    let empty = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(empty.path().join("test-app/templates")).unwrap();
    std::fs::write(
        empty.path().join("test-app/Chart.yaml"),
        "apiVersion: v2\nname: test-app\nversion: 1.1.0\n",
    )
    .unwrap();
    let o = run(&["package", "--destination", r.to_str().unwrap(), "--"]
        .into_iter()
        .chain([empty.path().join("test-app").to_str().unwrap()])
        .collect::<Vec<_>>());
    assert!(o.status.success(), "{}", support::text(&o));
    std::fs::rename(r.join("test-app-1.1.0.tgz"), r.join("test-app.tgz")).unwrap();
    let o = plan(None);
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains(expected),
        "{}",
        support::text(&o)
    );
    for _ in 0..2 {
        let o = plan(Some("HEAD"));
        assert_eq!(o.status.code(), Some(2), "{}", support::text(&o));
        assert!(
            String::from_utf8_lossy(&o.stdout).contains(expected),
            "{}",
            support::text(&o)
        );
        std::fs::remove_file(r.join("test-app.tgz")).ok();
    }
}
