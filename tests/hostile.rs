//! Hostile input as data: `fixtures/hostile/CASE/case.json` says what to
//! run against a copy of `fixtures/hostile/_base` (overlaid with the case's
//! own `repo/` files and generated ones), the exit code, message fragments,
//! and a peak memory bound for the process. After every case: no
//! temporary file is left in the repository, files that must stay as they
//! were did, and nothing outside the repository was written.
//!
//! The peak resident memory of each run is measured (the process's own
//! `RUSAGE_CHILDREN` peak under a Python wrapper) and printed with the
//! time; `PLIMSOLL_HOSTILE_CASE=name` runs one case, `PLIMSOLL_BIN=path`
//! measures another build (the release binary for the figures in notes).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

mod support;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    /// What the case tries, for people.
    about: String,
    args: Vec<String>,
    #[serde(default)]
    exit: i32,
    /// Fragments that must appear in stdout + stderr.
    #[serde(default)]
    says: Vec<String>,
    /// Fragments that must not appear (secrets, outside paths).
    #[serde(default)]
    never_says: Vec<String>,
    max_rss_mib: u64,
    #[serde(default)]
    generate: Vec<Generated>,
    /// `path -> target`; `$OUTSIDE` is a directory beside the repository.
    #[serde(default)]
    symlinks: BTreeMap<String, String>,
    #[serde(default)]
    fifos: Vec<String>,
    #[serde(default)]
    directories: Vec<String>,
    /// Files created in `$OUTSIDE` before the run; they must be unchanged
    /// after it, and `$OUTSIDE` must hold nothing else.
    #[serde(default)]
    outside: BTreeMap<String, String>,
    /// Repository files that must be byte-identical after the run.
    #[serde(default)]
    unchanged: Vec<String>,
    /// Repository paths that must not exist after the run.
    #[serde(default)]
    absent: Vec<String>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Generated {
    path: String,
    #[serde(default)]
    prefix: String,
    generator: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    count: usize,
    #[serde(default)]
    size: usize,
}

fn generate(g: &Generated) -> Vec<u8> {
    let mut out = g.prefix.clone().into_bytes();
    match g.generator.as_str() {
        // `text` `count` times.
        "repeat" => out.extend(g.text.repeat(g.count).into_bytes()),
        // `text` with `{i}` numbered 0..count, one per line.
        "numbered" => {
            for i in 0..g.count {
                out.extend(g.text.replace("{i}", &i.to_string()).into_bytes());
                out.push(b'\n');
            }
        }
        // One `size`-byte anchored string, aliased `count` times.
        "alias-string" => {
            out.extend(format!("big: &big {}\nuses:\n", "x".repeat(g.size)).into_bytes());
            for _ in 0..g.count {
                out.extend(b"  - *big\n");
            }
        }
        // `count` anchors, each `size` levels deep, each holding the last.
        "chained-deep-anchors" => {
            for i in 0..g.count {
                let inner = if i == 0 {
                    "x".to_string()
                } else {
                    format!("*a{}", i - 1)
                };
                out.extend(
                    format!(
                        "a{i}: &a{i} {}{inner}{}\n",
                        "[".repeat(g.size),
                        "]".repeat(g.size)
                    )
                    .into_bytes(),
                );
            }
        }
        // The billion laughs: `count` levels of `size` aliases each.
        "nested-alias-bomb" => {
            out.extend(format!("l0: &l0 [{}]\n", vec!["lol"; g.size].join(", ")).into_bytes());
            for i in 1..g.count {
                let uses = vec![format!("*l{}", i - 1); g.size].join(", ");
                out.extend(format!("l{i}: &l{i} [{uses}]\n").into_bytes());
            }
        }
        other => panic!("unknown generator {other}"),
    }
    out
}

/// Measures one process: runs it under a Python wrapper whose only child
/// it is, so that `RUSAGE_CHILDREN`'s peak is that process's peak.
const MEASURE: &str = "import resource, subprocess, sys\n\
r = subprocess.run(sys.argv[2:])\n\
open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n\
sys.exit(r.returncode if r.returncode >= 0 else 128 - r.returncode)\n";

/// Runs `program args` in `dir`, returning (exit code, output, peak RSS
/// in KiB) of that process alone.
fn run_measured(dir: &Path, program: &Path, args: &[String]) -> (i32, String, i64) {
    let out_path = tempfile::NamedTempFile::new().unwrap();
    let rss_path = tempfile::NamedTempFile::new().unwrap();
    let file = out_path.reopen().unwrap();
    let status = Command::new("python3")
        .current_dir(dir)
        .args(["-c", MEASURE])
        .arg(rss_path.path())
        .arg(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .status()
        .expect("python3 runs the measured process");
    let text = String::from_utf8_lossy(&std::fs::read(out_path.path()).unwrap()).into_owned();
    let rss = std::fs::read_to_string(rss_path.path())
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or(-1);
    (status.code().unwrap_or(-1), text, rss)
}

fn temp_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
        if e.file_name().to_string_lossy().contains(".plimsoll-tmp-") {
            out.push(p.clone());
        }
        if is_dir && e.file_name() != ".git" {
            temp_files(&p, out);
        }
    }
}

#[test]
fn hostile_inputs_are_refused_within_bounds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/hostile");
    let only = std::env::var("PLIMSOLL_HOSTILE_CASE").ok();
    let mut names: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('_'))
        .filter(|n| only.as_ref().is_none_or(|o| o == n))
        .collect();
    names.sort();
    let mut failures = Vec::new();
    let mut table = Vec::new();
    for name in &names {
        let dir = root.join(name);
        let case: Case =
            serde_json::from_str(&std::fs::read_to_string(dir.join("case.json")).unwrap())
                .unwrap_or_else(|e| panic!("{name}/case.json: {e}"));
        let work = tempfile::tempdir().unwrap();
        let repo = work.path().join("repo");
        let outside = work.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        support::copy_dir(&root.join("_base"), &repo);
        if dir.join("repo").is_dir() {
            support::copy_dir(&dir.join("repo"), &repo);
        }
        for g in &case.generate {
            let p = repo.join(&g.path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, generate(g)).unwrap();
        }
        for (file, text) in &case.outside {
            std::fs::write(outside.join(file), text).unwrap();
        }
        let outside_s = outside.display().to_string();
        for (link, target) in &case.symlinks {
            let p = repo.join(link);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            let _ = std::fs::remove_file(&p);
            std::os::unix::fs::symlink(target.replace("$OUTSIDE", &outside_s), &p).unwrap();
        }
        for fifo in &case.fifos {
            let p = repo.join(fifo);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            let ok = Command::new("mkfifo").arg(&p).status().unwrap().success();
            assert!(ok, "mkfifo");
        }
        for d in &case.directories {
            std::fs::create_dir_all(repo.join(d)).unwrap();
        }
        let before: BTreeMap<String, Vec<u8>> = case
            .unchanged
            .iter()
            .map(|f| (f.clone(), std::fs::read(repo.join(f)).unwrap_or_default()))
            .collect();

        let args: Vec<String> = case
            .args
            .iter()
            .map(|a| a.replace("$OUTSIDE", &outside_s))
            .collect();
        let started = std::time::Instant::now();
        let bin = std::env::var_os("PLIMSOLL_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_plimsoll")));
        let (code, text, rss_kib) = run_measured(&repo, &bin, &args);
        let elapsed = started.elapsed();
        let rss_mib = rss_kib / 1024;
        table.push(format!(
            "{name:<40} exit {code:>3}  {:>7.2} s  {rss_mib:>5} MiB  ({})",
            elapsed.as_secs_f64(),
            case.about
        ));

        let mut fail = |what: String| failures.push(format!("{name}: {what}\n--- output\n{text}"));
        if code != case.exit {
            fail(format!("exit {code}, expected {}", case.exit));
        }
        for s in &case.says {
            if !text.contains(s.as_str()) {
                fail(format!("does not say {s:?}"));
            }
        }
        for s in &case.never_says {
            if text.contains(&s.replace("$OUTSIDE", &outside_s)) {
                fail(format!("says {s:?}"));
            }
        }
        if rss_mib as u64 > case.max_rss_mib {
            fail(format!("peak RSS {rss_mib} MiB > {} MiB", case.max_rss_mib));
        }
        let mut temps = Vec::new();
        temp_files(&repo, &mut temps);
        if !temps.is_empty() {
            fail(format!("temporary files left: {temps:?}"));
        }
        for (f, bytes) in &before {
            if std::fs::read(repo.join(f)).unwrap_or_default() != *bytes {
                fail(format!("{f} changed"));
            }
        }
        for f in &case.absent {
            if std::fs::symlink_metadata(repo.join(f)).is_ok() {
                fail(format!("{f} exists"));
            }
        }
        let mut there: Vec<String> = std::fs::read_dir(&outside)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        there.sort();
        let expected: Vec<String> = case.outside.keys().cloned().collect();
        if there != expected {
            fail(format!("outside the repository now: {there:?}"));
        }
        for (file, text) in &case.outside {
            if std::fs::read_to_string(outside.join(file)).unwrap_or_default() != *text {
                fail(format!("$OUTSIDE/{file} was written"));
            }
        }
    }
    eprintln!("{}", table.join("\n"));
    assert!(names.len() >= 15 || only.is_some(), "{} cases", names.len());
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
