//! Planner cases as data: fixtures/plans/CASE/{desired,observed}.json (and
//! options.json) beside the expected text and Markdown plans and exit code. Run with
//! UPDATE_EXPECT=1 to rewrite the expected files after reviewing a change.

use std::collections::BTreeMap;
use std::path::Path;

use plimsoll_planner::journal::Journal;
use plimsoll_planner::plan::{plan, to_json, to_markdown, to_text, PlanOptions};
use plimsoll_planner::redact::Redactor;
use plimsoll_planner::state::{DesiredRelease, ObservedState};
use plimsoll_planner::version::Catalog;

#[derive(serde::Deserialize, Default)]
struct Options {
    #[serde(default)]
    strict: bool,
    #[serde(default)]
    catalogs: BTreeMap<String, Vec<String>>,
    /// The stack file's `redact:` patterns.
    #[serde(default)]
    redact: Vec<String>,
    /// The stack file's `operatorVolumes:`.
    #[serde(default)]
    operator_volumes: Vec<plimsoll_planner::plan::OperatorVolumeRule>,
    /// The release manifest and the platform release selected.
    #[serde(default)]
    platform: Option<plimsoll_planner::platform::Platform>,
    /// The stack file's `storagePools:`.
    #[serde(default)]
    storage_pools: Vec<plimsoll_planner::capacity::StoragePool>,
}

#[test]
fn planner_cases() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/plans");
    let update = std::env::var("UPDATE_EXPECT").is_ok();
    let mut failures = Vec::new();
    let mut n = 0;
    let mut cases: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cases.sort();
    for case in cases {
        let read = |f: &str| std::fs::read_to_string(case.join(f));
        let desired: Vec<DesiredRelease> =
            serde_json::from_str(&read("desired.json").unwrap()).unwrap();
        let observed: ObservedState =
            serde_json::from_str(&read("observed.json").unwrap()).unwrap();
        let opts: Options = read("options.json")
            .map(|t| serde_json::from_str(&t).unwrap())
            .unwrap_or_default();
        let options = PlanOptions {
            strict: opts.strict,
            catalogs: opts
                .catalogs
                .into_iter()
                .map(|(k, v)| (k, Catalog { versions: v }))
                .collect(),
            redactor: Redactor::with_patterns(&opts.redact),
            phased_lists: Default::default(),
            operator_volumes: opts.operator_volumes,
            platform: opts.platform,
            manifest_context: None,
            storage_pools: opts.storage_pools,
        };
        let p = plan(&desired, &observed, &options);
        let text = to_text(&p);
        let exit = format!("{}\n", p.exit_code());
        // Every form is produced, and no secret (secrets.txt: one per line)
        // appears in any of them, nor in the journal made of the plan.
        let journal = Journal::new(&p, "digest", None).to_data();
        let all = format!(
            "{text}{}{}{}",
            to_markdown(&p),
            to_json(&p),
            serde_json::to_string(&journal).unwrap()
        );
        for secret in read("secrets.txt").unwrap_or_default().lines() {
            if !secret.is_empty() && all.contains(secret) {
                failures.push(format!("{}: secret {secret:?} shown", case.display()));
            }
        }
        let markdown = to_markdown(&p);
        if update {
            std::fs::write(case.join("expected.txt"), &text).unwrap();
            std::fs::write(case.join("expected.md"), &markdown).unwrap();
            std::fs::write(case.join("expected.exit"), &exit).unwrap();
        } else {
            if read("expected.txt").ok().as_deref() != Some(text.as_str()) {
                failures.push(format!("{}: plan differs:\n{text}", case.display()));
            }
            if read("expected.md").ok().as_deref() != Some(markdown.as_str()) {
                failures.push(format!(
                    "{}: Markdown plan differs:\n{markdown}",
                    case.display()
                ));
            }
            if read("expected.exit").ok().as_deref() != Some(exit.as_str()) {
                failures.push(format!("{}: exit code {exit}", case.display()));
            }
        }
        n += 1;
    }
    assert!(n >= 10, "{n} cases");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
