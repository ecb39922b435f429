//! `docs/ci.md` cannot rot: its commands (the block marked `# ci:
//! commands`) run against `examples/pravega` (charts in the repository, a
//! snapshot beside them) with the exit codes the jobs accept, and every
//! `plimsoll render` / `plimsoll plan` line of the GitHub Actions and
//! GitLab CI jobs is one of those commands.

use std::path::Path;
use std::process::Command;

use plimsoll_testenv::{write_helm_command, Env};

mod support;
use support::copy_dir;

fn documented() -> (Vec<String>, Vec<String>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("docs/ci.md")).unwrap();
    let block = doc
        .split("# ci: commands\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a `# ci: commands` block");
    let commands: Vec<String> = block
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("plimsoll "))
        .map(str::to_string)
        .collect();
    // Every plimsoll render/plan invocation in the job definitions.
    let in_jobs: Vec<String> = doc
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(|l| {
            l.match_indices("plimsoll ")
                .map(|(i, _)| l[i..].to_string())
                .collect::<Vec<_>>()
        })
        .filter(|c| c.starts_with("plimsoll render") || c.starts_with("plimsoll plan"))
        .map(|c| {
            // Up to the end of the shell command.
            let end = c.find([';', '`', '\'']).unwrap_or(c.len());
            c[..end].trim().to_string()
        })
        .collect();
    (commands, in_jobs)
}

#[test]
fn the_documented_ci_commands_run_against_an_example() {
    let (commands, in_jobs) = documented();
    assert_eq!(commands.len(), 2, "{commands:?}");
    for c in &in_jobs {
        assert!(
            commands.contains(c),
            "docs/ci.md runs {c:?}, which is not one of the tested commands {commands:?}"
        );
    }
    assert!(
        in_jobs.len() >= 4,
        "both jobs run both commands: {in_jobs:?}"
    );

    let Some(env) = Env::require() else { return };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let repo = tempfile::tempdir().unwrap();
    copy_dir(&root.join("examples/pravega"), repo.path());
    let helm = write_helm_command(&env, &repo.path().join("helm-for-test"), None).unwrap();
    for c in &commands {
        // `ARGS > FILE`: the shell's redirection, done here.
        let (args, out) = match c.split_once(" > ") {
            Some((a, f)) => (a, Some(f.trim())),
            None => (c.as_str(), None),
        };
        let mut words = args.split_whitespace();
        assert_eq!(words.next(), Some("plimsoll"));
        let o = Command::new(env!("CARGO_BIN_EXE_plimsoll"))
            .current_dir(repo.path())
            .args(words)
            .env("PLIMSOLL_HELM", &helm)
            .output()
            .unwrap();
        let code = o.status.code();
        assert!(
            matches!(code, Some(0) | Some(2)),
            "{c}: exit {code:?}\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
        if let Some(f) = out {
            std::fs::write(repo.path().join(f), &o.stdout).unwrap();
        }
    }
    let md = std::fs::read_to_string(repo.path().join("plan.md")).unwrap();
    assert!(
        md.starts_with("**No changes.**") || md.starts_with("**Plan:**"),
        "{md}"
    );
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo.path().join("plan.json")).unwrap())
            .unwrap();
    assert_eq!(saved["format"], "plimsoll-saved-plan/v1");
}
