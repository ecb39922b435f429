//! End-to-end tests of the `plimsoll` binary: each test works in a fresh
//! temporary repository.

use std::path::{Path, PathBuf};
use std::process::Output;

mod support;
use support::{copy_dir, plimsoll};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A temporary copy of the bundled example repository.
fn example_repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in ["plimsoll.yaml", "releases.yaml"] {
        std::fs::copy(root().join(f), dir.path().join(f)).unwrap();
    }
    for d in ["profiles", "overlays", "site"] {
        copy_dir(&root().join(d), &dir.path().join(d));
    }
    dir
}

fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

#[test]
fn render_writes_every_release_and_check_detects_staleness() {
    let repo = example_repo();
    let o = plimsoll(repo.path(), &["render"]);
    assert!(o.status.success(), "{}", stderr(&o));
    for name in [
        "thingpark-data-controllers",
        "thingpark-data",
        "thingpark-application-controllers",
        "thingpark-enterprise",
    ] {
        assert!(
            repo.path().join(format!("rendered/{name}.yaml")).is_file(),
            "{name}"
        );
    }
    let lock = std::fs::read_to_string(repo.path().join("rendered/plimsoll.lock")).unwrap();
    assert!(
        lock.contains("segment: m") && lock.contains("path: profiles/m.yaml"),
        "{lock}"
    );

    let o = plimsoll(repo.path(), &["render", "--check"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    // A changed layer makes the outputs that use it stale.
    let mut site = std::fs::read_to_string(repo.path().join("site/data-stack.yaml")).unwrap();
    site.push_str("extra: 1\n");
    write(repo.path(), "site/data-stack.yaml", &site);
    let o = plimsoll(repo.path(), &["render", "--check"]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(
        out.contains("stale: ./rendered/thingpark-data.yaml"),
        "{out}"
    );
    assert!(out.contains("stale: ./rendered/plimsoll.lock"), "{out}");
    assert!(!out.contains("thingpark-enterprise.yaml"), "{out}");

    // A missing output is named too.
    std::fs::remove_file(repo.path().join("rendered/thingpark-enterprise.yaml")).unwrap();
    let o = plimsoll(repo.path(), &["render", "--check"]);
    assert!(stdout(&o).contains("missing: ./rendered/thingpark-enterprise.yaml"));
}

#[test]
fn render_equals_merge_of_the_same_layers() {
    let repo = example_repo();
    let o = plimsoll(
        repo.path(),
        &["render", "--set", "segment=l", "--set", "cloud=gcp"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let rendered =
        std::fs::read_to_string(repo.path().join("rendered/thingpark-enterprise.yaml")).unwrap();
    let o = plimsoll(
        repo.path(),
        &[
            "merge",
            "overlays/storage/gcp.yaml",
            "overlays/lb/gcp.yaml",
            "overlays/priority-class.yaml",
            "profiles/l.yaml",
            "site/application-stack.yaml",
        ],
    );
    assert!(o.status.success());
    assert_eq!(stdout(&o), rendered);
    assert!(rendered.contains("storageClass: \"thingpark-csi-pd-ssd-xfs\""));
    assert!(
        rendered.contains("host: *dnsHostname"),
        "aliases are kept as written"
    );
}

#[test]
fn render_json_types_values() {
    let repo = example_repo();
    let o = plimsoll(repo.path(), &["render", "--format", "json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let j = std::fs::read_to_string(repo.path().join("rendered/thingpark-data.json")).unwrap();
    assert!(j.contains("\"replicas\": 1"), "{j}");
    assert!(j.contains("\"size\": \"10Gi\""), "{j}");
    let j =
        std::fs::read_to_string(repo.path().join("rendered/thingpark-enterprise.json")).unwrap();
    assert!(
        j.contains("\"host\": \"enterprise.example.org\""),
        "aliases resolved in JSON: {j}"
    );
}

#[test]
fn explain_shows_the_layer_and_what_it_overrode() {
    let repo = example_repo();
    write(
        repo.path(),
        "site/data-stack.yaml",
        "mariadb-galera:\n  persistence:\n    size: 12Gi\n",
    );
    let o = plimsoll(
        repo.path(),
        &[
            "explain",
            "thingpark-data",
            "mariadb-galera.persistence.size",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("mariadb-galera.persistence.size = 12Gi"),
        "{out}"
    );
    assert!(out.contains("set by site/data-stack.yaml:3"), "{out}");
    assert!(out.contains("overrode 10Gi  (profiles/m.yaml:7)"), "{out}");
}

fn stack_error(stack: &str, args: &[&str]) -> String {
    let repo = example_repo();
    write(repo.path(), "plimsoll.yaml", stack);
    let o = plimsoll(repo.path(), args);
    assert_eq!(
        o.status.code(),
        Some(1),
        "expected failure, got {}",
        stdout(&o)
    );
    assert!(
        !repo.path().join("rendered").exists(),
        "nothing is written on error"
    );
    stderr(&o)
}

const RELEASE: &str = "  - name: a\n    chart: c\n    version: 1.0.0\n    namespace: n\n    stage: s1\n    layers: [site/data-stack.yaml]\n";

#[test]
fn stack_file_errors_name_the_place() {
    let e = stack_error(
        &format!("variables:\n  segment: [m, l]\nstages: [s1]\nreleases:\n{RELEASE}  - name: b\n    chart: c\n    version: 1\n    namespace: n\n    stage: s1\n    layers:\n      - profiles/${{size}}.yaml\n"),
        &["render"],
    );
    assert!(
        e.contains("plimsoll.yaml:17:") && e.contains("unknown variable ${size}"),
        "{e}"
    );

    let e = stack_error(
        &format!("variables:\n  segment: {{values: [m, l], default: m}}\nreleases:\n{RELEASE}"),
        &["render", "--set", "segment=xl"],
    );
    assert!(
        e.contains("value \"xl\" is not allowed for segment (allowed: m, l)"),
        "{e}"
    );

    let e = stack_error(
        &format!("releases:\n{RELEASE}").replace("site/data-stack.yaml", "site/nope.yaml"),
        &["render"],
    );
    assert!(e.contains("cannot read layer site/nope.yaml"), "{e}");

    let e = stack_error(
        &format!("releases:\n{RELEASE}").replace("site/data-stack.yaml", "../outside.yaml"),
        &["render"],
    );
    assert!(
        e.contains("plimsoll.yaml:7:") && e.contains("escapes the repository"),
        "{e}"
    );

    let e = stack_error(&format!("releases:\n{RELEASE}{RELEASE}"), &["render"]);
    assert!(
        e.contains("plimsoll.yaml:8:") && e.contains("duplicate release name \"a\""),
        "{e}"
    );

    let e = stack_error(
        &format!("stages:\n  - {{name: s1, after: [s2]}}\n  - {{name: s2, after: [s1]}}\nreleases:\n{RELEASE}{}", RELEASE.replace("name: a", "name: b").replace("s1", "s2")),
        &["render"],
    );
    assert!(
        e.contains("plimsoll.yaml:2:") && e.contains("stages form a cycle: s1 -> s2"),
        "{e}"
    );

    let e = stack_error(
        &format!("stages: [s1, s2]\nreleases:\n{RELEASE}"),
        &["render"],
    );
    assert!(
        e.contains("stage \"s2\" has no release (a gap in the stages)"),
        "{e}"
    );

    let e = stack_error(
        &format!("releases:\n{RELEASE}").replace("chart: c", "chrt: c"),
        &["render"],
    );
    assert!(e.contains("unknown field \"chrt\""), "{e}");

    let patches = "    patches:\n      - apiVersion: psmdb.percona.com/v1\n        kind: PerconaServerMongoDB\n        name: mongo\n        patch:\n          - {op: rplace, path: /spec/x, value: true}\n";
    let e = stack_error(&format!("releases:\n{RELEASE}{patches}"), &["render"]);
    assert!(
        e.contains("plimsoll.yaml:13:13") && e.contains("unknown patch op \"rplace\""),
        "{e}"
    );
    let e = stack_error(
        &format!(
            "releases:\n{RELEASE}{}",
            patches
                .replace("rplace", "replace")
                .replace("/spec/x", "spec.x")
        ),
        &["render"],
    );
    assert!(e.contains("is not a JSON pointer"), "{e}");

    // phasedLists: and operatorVolumes:, each error at its place.
    let phased = "phasedLists:\n  - apiVersion: cstor.openebs.io/v1\n    kind: CStorVolumeConfig\n    path: /spec/policy/replicaPoolInfo\n    key: poolName\n    element: {apiVersion: cstor.openebs.io/v1, kind: CStorVolumeReplica, name: '{name}-{key}'}\n";
    let renders = |stack: &str| {
        let repo = example_repo();
        write(repo.path(), "plimsoll.yaml", stack);
        let o = plimsoll(repo.path(), &["render"]);
        assert!(o.status.success(), "{}", stderr(&o));
    };
    renders(&format!("{phased}releases:\n{RELEASE}"));
    let e = stack_error(
        &format!(
            "{}releases:\n{RELEASE}",
            phased.replace("/spec/policy/replicaPoolInfo", "spec.policy")
        ),
        &["render"],
    );
    assert!(
        e.contains("plimsoll.yaml:4:11") && e.contains("a JSON pointer"),
        "{e}"
    );
    let e = stack_error(
        &format!(
            "{}releases:\n{RELEASE}",
            phased.replace("'{name}-{key}'", "'../{name}'")
        ),
        &["render"],
    );
    assert!(
        e.contains("plimsoll.yaml:6:") && e.contains("resource name"),
        "{e}"
    );
    let volumes = "operatorVolumes:\n  - apiVersion: example.com/v1\n    kind: Db\n    each: /spec/shards\n    itemName: /spec/shards/*/name\n    replicas: /spec/shards/*/replicas\n    size: /spec/shards/*/storage/size\n    pvc: 'data-{name}-{item}-{ordinal}'\n";
    renders(&format!("{volumes}releases:\n{RELEASE}"));
    let e = stack_error(
        &format!(
            "{}releases:\n{RELEASE}",
            volumes.replace("    each: /spec/shards\n", "")
        ),
        &["render"],
    );
    assert!(
        e.contains("plimsoll.yaml:6:11") && e.contains("`*` for the item of `each`"),
        "{e}"
    );
    let e = stack_error(
        &format!("{}releases:\n{RELEASE}", volumes.replace("-{ordinal}", "")),
        &["render"],
    );
    assert!(
        e.contains("plimsoll.yaml:8:10") && e.contains("{ordinal}"),
        "{e}"
    );

    // platform: the bundled example's manifest, broken three ways.
    let platform_stack = std::fs::read_to_string(root().join("plimsoll.yaml")).unwrap();
    let manifest = std::fs::read_to_string(root().join("releases.yaml")).unwrap();
    let platform_error = |stack: &str, manifest: &str| {
        let repo = example_repo();
        write(repo.path(), "plimsoll.yaml", stack);
        write(repo.path(), "releases.yaml", manifest);
        let o = plimsoll(repo.path(), &["render"]);
        assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
        stderr(&o)
    };
    let e = platform_error(
        &platform_stack.replace(
            r#"values: ["7.3.4", "7.3.6", "8.0.0"]"#,
            r#"values: ["7.3.4", "7.3.5", "8.0.0"]"#,
        ),
        &manifest,
    );
    assert!(
        e.contains("plimsoll.yaml:26:3: platform variable release allows 7.3.5, which the manifest releases.yaml does not list"),
        "{e}"
    );
    let e = platform_error(
        &platform_stack,
        &manifest.replace("thingpark-enterprise:", "thingpark-enterprize:"),
    );
    assert!(
        e.contains("plimsoll.yaml:67:5: release \"thingpark-enterprise\": the manifest releases.yaml does not cover chart thingpark-enterprise"),
        "{e}"
    );
    let e = platform_error(
        &platform_stack,
        &manifest.replace("      thingpark-data: 1.6.0\n", "      thingpark-data:\n"),
    );
    assert!(
        e.contains("releases.yaml:9:22") && e.contains("no version of chart thingpark-data"),
        "{e}"
    );
}

#[test]
fn malformed_yaml_is_reported_with_position_and_nothing_is_written() {
    let repo = example_repo();
    assert!(plimsoll(repo.path(), &["render"]).status.success());
    let before = std::fs::read_to_string(repo.path().join("rendered/thingpark-data.yaml")).unwrap();
    write(repo.path(), "profiles/m.yaml", "a:\n  b: [1, 2\n  c: 3\n");
    let o = plimsoll(repo.path(), &["render"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("profiles/m.yaml:3:"), "{e}");
    // Earlier outputs are untouched.
    let after = std::fs::read_to_string(repo.path().join("rendered/thingpark-data.yaml")).unwrap();
    assert_eq!(before, after);
}

#[test]
fn hostile_inputs_are_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "bad-utf8.yaml",
            b"a: \xff\xfe\n".to_vec(),
            "bad-utf8.yaml:1:4: invalid UTF-8",
        ),
        (
            "control.yaml",
            b"a: b\x07\n".to_vec(),
            "control.yaml:1:5: control character U+0007",
        ),
        (
            "deep-flow.yaml",
            format!("a: {}", "[".repeat(5000)).into_bytes(),
            "exceeded max depth of 1000",
        ),
        (
            "deep-block.yaml",
            (0..1500)
                .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
                .collect::<String>()
                .into_bytes(),
            "exceeded max depth of 1000",
        ),
    ];
    for (name, bytes, expected) in cases {
        std::fs::write(dir.path().join(name), &bytes).unwrap();
        let o = plimsoll(dir.path(), &["merge", name]);
        assert_eq!(o.status.code(), Some(1), "{name}");
        assert!(stderr(&o).contains(expected), "{name}: {}", stderr(&o));
    }
    // An oversized file is refused before parsing.
    let big = vec![b'#'; 17 * 1024 * 1024];
    std::fs::write(dir.path().join("big.yaml"), big).unwrap();
    let o = plimsoll(dir.path(), &["merge", "big.yaml"]);
    assert!(
        stderr(&o).contains("larger than the 16 MiB limit"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn alias_bombs_are_kept_as_written_not_expanded() {
    let dir = tempfile::tempdir().unwrap();
    let mut doc = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let p = i - 1;
        doc.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    std::fs::write(dir.path().join("bomb.yaml"), &doc).unwrap();
    let o = plimsoll(dir.path(), &["merge", "bomb.yaml"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        doc,
        "the merge keeps aliases, so a bomb costs nothing"
    );
}

#[test]
fn top_level_sequence_into_map_fails_like_yq() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.yaml", "a: 1\n");
    write(dir.path(), "b.yaml", "- 1\n");
    let o = plimsoll(dir.path(), &["merge", "a.yaml", "b.yaml"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("b.yaml: Cannot multiply !!map with !!seq"),
        "{}",
        stderr(&o)
    );
}

/// A temporary repository rendering one ThingPark release's application
/// chain at segment l on AWS, as the upstream scale-up procedure does.
fn thingpark_app_repo(version: &str) -> tempfile::TempDir {
    let tp = root().join("fixtures/thingpark").join(version);
    let repo = tempfile::tempdir().unwrap();
    for (from, to) in [
        (
            "examples/hosting/amazon/values-storage.yaml",
            "storage.yaml",
        ),
        ("examples/hosting/amazon/values-lb.yaml", "lb.yaml"),
        (
            "examples/priority-class/values-default-priority-class.yaml",
            "priority.yaml",
        ),
        ("values/sizing/values-l-segment.yaml", "sizing.yaml"),
        (
            "examples/customization/values-thingpark-stack.yaml",
            "values-thingpark-stack.yaml",
        ),
    ] {
        std::fs::copy(tp.join(from), repo.path().join(to)).unwrap();
    }
    write(
        repo.path(),
        "plimsoll.yaml",
        "releases:\n  - name: tpe\n    chart: actility/thingpark-enterprise\n    version: 1.4.0\n    namespace: tp\n    stage: app\n    layers: [storage.yaml, lb.yaml, priority.yaml, sizing.yaml, values-thingpark-stack.yaml]\n",
    );
    repo
}

/// ThingPark 7.3.1 to 7.3.4 ship `ingress-nginx.controller:` with only
/// comments under it in values-thingpark-stack.yaml: a null that erases the
/// load-balancer annotations, priority class and resources set by earlier
/// layers. 7.3.6 fixed it.
#[test]
fn null_clobber_lint_catches_the_thingpark_73x_bug() {
    for version in ["v7.3.1", "v7.3.3", "v7.3.4"] {
        let repo = thingpark_app_repo(version);
        let o = plimsoll(repo.path(), &["render"]);
        assert!(
            o.status.success(),
            "warnings do not fail a render: {}",
            stderr(&o)
        );
        let e = stderr(&o);
        let line = e
            .lines()
            .find(|l| l.contains("[null-clobber]"))
            .unwrap_or_else(|| panic!("{version}: no null-clobber warning: {e}"));
        assert!(
            line.starts_with("warning: values-thingpark-stack.yaml:345:"),
            "{version}: {line}"
        );
        assert!(
            line.contains("`ingress-nginx.controller` is null here"),
            "{line}"
        );
        assert!(
            line.contains("(lb.yaml:3)"),
            "names where the erased values came from: {line}"
        );
        for key in ["service", "priorityClassName", "resources"] {
            assert!(line.contains(key), "erased key {key} named: {line}");
        }
        let rendered = std::fs::read_to_string(repo.path().join("rendered/tpe.yaml")).unwrap();
        assert!(
            !rendered.contains("aws-load-balancer-type"),
            "yq semantics: the annotations are gone"
        );

        let fresh = thingpark_app_repo(version);
        let o = plimsoll(fresh.path(), &["render", "--strict"]);
        assert_eq!(o.status.code(), Some(1));
        assert!(
            stderr(&o).contains("error: values-thingpark-stack.yaml:345:"),
            "{}",
            stderr(&o)
        );
        assert!(
            !fresh.path().join("rendered").exists(),
            "--strict writes nothing"
        );
    }
    let fixed = thingpark_app_repo("v7.3.6");
    let o = plimsoll(fixed.path(), &["render", "--strict"]);
    assert!(o.status.success(), "7.3.6 is clean: {}", stderr(&o));
    let rendered = std::fs::read_to_string(fixed.path().join("rendered/tpe.yaml")).unwrap();
    assert!(rendered.contains("aws-load-balancer-type"));
}

#[test]
fn type_change_lint() {
    let repo = tempfile::tempdir().unwrap();
    write(repo.path(), "a.yaml", "tolerations:\n  key: x\n");
    write(repo.path(), "b.yaml", "tolerations:\n  - key: x\n");
    write(
        repo.path(),
        "plimsoll.yaml",
        "releases:\n  - {name: r, chart: c, version: 1, namespace: n, stage: s, layers: [a.yaml, b.yaml]}\n",
    );
    let o = plimsoll(repo.path(), &["render"]);
    let e = stderr(&o);
    assert!(e.contains("b.yaml:2:3: [type-change] r: `tolerations` changes from a map (a.yaml:2) to a sequence"), "{e}");
}

#[test]
fn strict_keys_reports_typos_against_local_chart_defaults() {
    let repo = tempfile::tempdir().unwrap();
    write(
        repo.path(),
        "chart/Chart.yaml",
        "apiVersion: v2\nname: db\nversion: 1.0.0\n",
    );
    write(
        repo.path(),
        "chart/values.yaml",
        "persistence:\n  size: 8Gi\n  storageClass: \"\"\nextraEnv: {}\n",
    );
    write(
        repo.path(),
        "chart/charts/metrics/values.yaml",
        "enabled: false\n",
    );
    write(
        repo.path(),
        "a.yaml",
        "persistence:\n  size: 10Gi\nextraEnv:\n  FOO: bar\nmetrics:\n  enabled: true\n",
    );
    write(
        repo.path(),
        "b.yaml",
        "persistance:\n  size: 20Gi\nmetrics:\n  enabeld: true\n",
    );
    write(
        repo.path(),
        "plimsoll.yaml",
        "releases:\n  - {name: db, chart: chart, version: 1.0.0, namespace: n, stage: s, layers: [a.yaml, b.yaml]}\n",
    );
    let o = plimsoll(repo.path(), &["render", "--strict-keys"]);
    let e = stderr(&o);
    assert!(
        e.contains("b.yaml:1:1: [unknown-key] db: `persistance`"),
        "{e}"
    );
    assert!(
        e.contains("b.yaml:4:3: [unknown-key] db: `metrics.enabeld`"),
        "{e}"
    );
    assert!(!e.contains("a.yaml"), "known keys and open maps pass: {e}");
}

#[test]
fn render_refuses_an_alias_the_merge_put_before_its_anchor() {
    let repo = tempfile::tempdir().unwrap();
    write(repo.path(), "a.yaml", "app:\n  replicas: 1\n");
    write(
        repo.path(),
        "b.yaml",
        "global:\n  host: &host example.org\napp:\n  host: *host\n",
    );
    write(
        repo.path(),
        "plimsoll.yaml",
        "releases:\n  - {name: r, chart: c, version: 1, namespace: n, stage: s, layers: [a.yaml, b.yaml]}\n",
    );
    let o = plimsoll(repo.path(), &["render"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("unknown anchor 'host' referenced")
            && e.contains("alias the merge placed before its anchor"),
        "{e}"
    );
    let o = plimsoll(repo.path(), &["merge", "a.yaml", "b.yaml"]);
    assert!(o.status.success(), "merge prints what yq prints");
    assert_eq!(
        stdout(&o),
        "app:\n  replicas: 1\n  host: *host\nglobal:\n  host: &host example.org\n"
    );
    assert!(stderr(&o).contains("warning: the merged output does not parse again"));
}

#[test]
fn render_refuses_output_that_would_not_parse() {
    let repo = tempfile::tempdir().unwrap();
    write(repo.path(), "a.yaml", "g: #\n !:\n $:\n");
    write(
        repo.path(),
        "plimsoll.yaml",
        "releases:\n  - {name: r, chart: c, version: 1, namespace: n, stage: s, layers: [a.yaml]}\n",
    );
    let o = plimsoll(repo.path(), &["render"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("the rendered values do not parse again"),
        "{}",
        stderr(&o)
    );
    assert!(!repo.path().join("rendered").exists());
}

/// The committed output of the bundled example is current: what CI runs on
/// a pull request of a deployment repository.
#[test]
fn bundled_example_outputs_are_up_to_date() {
    let o = plimsoll(&root(), &["render", "--check"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "run `plimsoll render` and commit rendered/:\n{}",
        stdout(&o)
    );
}

/// A gzip'd ustar archive, as `helm package` writes.
fn tgz(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut tar = Vec::new();
    for (name, body) in files {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..108].copy_from_slice(b"0000644\0");
        h[124..136].copy_from_slice(format!("{:011o}\0", body.len()).as_bytes());
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        tar.extend_from_slice(&h);
        tar.extend_from_slice(body);
        tar.resize(tar.len().div_ceil(512) * 512, 0);
    }
    tar.resize(tar.len() + 1024, 0);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &tar).unwrap();
    gz.finish().unwrap()
}

#[test]
fn strict_keys_reads_packaged_charts_and_subcharts() {
    let repo = tempfile::tempdir().unwrap();
    let sub = tgz(&[
        ("metrics/Chart.yaml", b"name: metrics\nversion: 0.3.0\n"),
        ("metrics/values.yaml", b"enabled: false\nport: 9100\n"),
    ]);
    let chart = tgz(&[
        ("db/Chart.yaml", b"name: db\nversion: 1.0.0\n"),
        ("db/values.yaml", b"persistence:\n  size: 8Gi\n"),
        ("db/charts/metrics-0.3.0.tgz", &sub),
    ]);
    std::fs::write(repo.path().join("db-1.0.0.tgz"), chart).unwrap();
    write(
        repo.path(),
        "a.yaml",
        "persistence:\n  size: 10Gi\nmetrics:\n  port: 9200\n",
    );
    write(
        repo.path(),
        "b.yaml",
        "persistence:\n  sise: 20Gi\nmetrics:\n  enabeld: true\n",
    );
    write(
        repo.path(),
        "plimsoll.yaml",
        "releases:\n  - {name: db, chart: db-1.0.0.tgz, version: 1.0.0, namespace: n, stage: s, layers: [a.yaml, b.yaml]}\n",
    );
    let o = plimsoll(repo.path(), &["render", "--strict-keys"]);
    let e = stderr(&o);
    assert!(
        e.contains("b.yaml:2:3: [unknown-key] db: `persistence.sise`"),
        "{e}"
    );
    assert!(
        e.contains("b.yaml:4:3: [unknown-key] db: `metrics.enabeld`"),
        "{e}"
    );
    assert!(!e.contains("a.yaml"), "subchart keys are known: {e}");
}

/// Values from a repository are untrusted: names, namespaces, chart
/// references, versions and variable values that could leave the
/// repository or reach helm as flags are refused when the stack file is
/// read, with file:line:col, before anything is written or run.
#[test]
fn hostile_names_charts_and_variable_values_are_refused_at_parse_time() {
    let cases: &[(&str, &str, &str)] = &[
        ("name: a", "name: --post-renderer=./evil.sh", "plimsoll.yaml:2:11: release name \"--post-renderer=./evil.sh\" must be a DNS-1123 subdomain"),
        ("name: a", "name: ../../../tmp/x", "plimsoll.yaml:2:11: release name \"../../../tmp/x\""),
        ("name: a", &format!("name: {}", "a".repeat(54)), "at most 53 characters"),
        ("name: a", "name: UPPER", "release name \"UPPER\""),
        ("chart: c", "chart: --kube-apiserver=https://evil", "plimsoll.yaml:3:12: chart \"--kube-apiserver=https://evil\" must be a relative path"),
        ("chart: c", "chart: /etc/charts/x", "escapes the repository"),
        ("chart: c", "chart: ../c", "escapes the repository"),
        ("chart: c", "chart: oci://registry.invalid/../x", "is not a valid oci:// reference"),
        ("version: 1.0.0", "version: --devel", "plimsoll.yaml:4:14: chart version \"--devel\" is not a version"),
        ("namespace: n", "namespace: kube_system", "plimsoll.yaml:5:16: namespace \"kube_system\" must be a DNS label"),
        ("namespace: n", "namespace: -n", "namespace \"-n\""),
    ];
    for (from, to, want) in cases {
        let stack = format!("releases:\n{RELEASE}").replace(from, to);
        let e = stack_error(&stack, &["render"]);
        assert!(e.contains(want), "{to}: {e}");
    }
    for value in ["../../x", "/abs", "a/b", "-x", ".."] {
        let e = stack_error(
            &format!("variables:\n  segment: [m, '{value}']\nreleases:\n{RELEASE}"),
            &["render"],
        );
        assert!(
            e.contains("plimsoll.yaml:2:") && e.contains("may hold only letters, digits"),
            "{value}: {e}"
        );
    }
    let patch = "    patches:\n      - apiVersion: v1\n        kind: ConfigMap\n        name: ../secrets/x\n        patch:\n          - {op: add, path: /data/x, value: y}\n";
    let e = stack_error(&format!("releases:\n{RELEASE}{patch}"), &["render"]);
    assert!(
        e.contains("plimsoll.yaml:11:15") && e.contains("is not a Kubernetes object name"),
        "{e}"
    );
    // Valid references still pass: repo/name, oci://, a relative directory.
    for chart in [
        "actility/thingpark-enterprise",
        "oci://registry.invalid/charts/x",
        "charts/test-data",
    ] {
        let repo = example_repo();
        write(
            repo.path(),
            "plimsoll.yaml",
            &format!("releases:\n{RELEASE}").replace("chart: c", &format!("chart: {chart}")),
        );
        let o = plimsoll(repo.path(), &["render"]);
        assert_eq!(o.status.code(), Some(0), "{chart}: {}", stderr(&o));
    }
}

/// Runs the binary in `dir`, killed (and failing the test) after 20 s: a
/// command that blocks on a FIFO or reads /dev/zero forever must not hang
/// the suite.
fn plimsoll_bounded(dir: &Path, args: &[&str]) -> Output {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_plimsoll"))
        .current_dir(dir)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("plimsoll {args:?} did not finish within 20 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Inputs are read bounded: a device or FIFO is refused before it is
/// opened, and no more than the 16 MiB limit is read from any file.
#[test]
fn devices_fifos_and_endless_files_are_refused_without_reading_them() {
    let repo = example_repo();
    let o = plimsoll_bounded(repo.path(), &["merge", "/dev/zero"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("/dev/zero is not a regular file"),
        "{}",
        stderr(&o)
    );

    let fifo = repo.path().join("site/fifo.yaml");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let o = plimsoll_bounded(repo.path(), &["merge", fifo.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("is not a regular file"),
        "{}",
        stderr(&o)
    );
    let stack = std::fs::read_to_string(repo.path().join("plimsoll.yaml")).unwrap();
    write(
        repo.path(),
        "plimsoll.yaml",
        &stack.replacen("site/data-stack.yaml", "site/fifo.yaml", 1),
    );
    let o = plimsoll_bounded(repo.path(), &["render"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("is not a regular file"),
        "{}",
        stderr(&o)
    );

    // A file past the limit is refused by the parser, at its start.
    std::fs::write(repo.path().join("plimsoll.yaml"), &stack).unwrap();
    let big = repo.path().join("big.yaml");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(64 << 20).unwrap();
    let o = plimsoll_bounded(repo.path(), &["merge", "big.yaml"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("big.yaml:1:1: file is larger than the 16 MiB limit"),
        "{}",
        stderr(&o)
    );
}
