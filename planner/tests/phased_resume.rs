//! A phased list's move planned again after any of its phases is the rest
//! of the first plan: an interrupted sync resumes its journal rather than
//! planning afresh (the sync resumes only when every fresh step is one of
//! the journal's remaining ones).

use std::path::Path;

use plimsoll_planner::plan::{plan, PlanOptions, Step};
use plimsoll_planner::state::{DesiredRelease, ObservedState};

fn load(case: &str) -> (Vec<DesiredRelease>, ObservedState) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/plans")
        .join(case);
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    (
        serde_json::from_str(&read("desired.json")).unwrap(),
        serde_json::from_str(&read("observed.json")).unwrap(),
    )
}

#[test]
fn a_plan_after_any_phase_is_the_rest_of_the_first() {
    for case in [
        "cstor-replica-move-node2-to-node3",
        "cstor-replica-move-both-replicas",
    ] {
        let (desired, observed) = load(case);
        let options = PlanOptions::default();
        let first = plan(&desired, &observed, &options);
        let steps = &first.releases[0].steps;
        let edits: Vec<(usize, Vec<String>)> = steps
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s {
                Step::ChangeListElement { after, .. } => Some((i, after.clone())),
                _ => None,
            })
            .collect();
        assert!(edits.len() >= 2, "{case}: {steps:?}");
        for (i, after) in &edits {
            let mut now = observed.clone();
            let object = now.resources[0].object.as_mut().unwrap();
            *object.pointer_mut("/spec/policy/replicaPoolInfo").unwrap() = after
                .iter()
                .map(|k| serde_json::json!({"poolName": k}))
                .collect();
            let again = plan(&desired, &now, &options);
            let rest = &steps[i + 1..];
            let fresh = again
                .releases
                .first()
                .map(|r| r.steps.clone())
                .unwrap_or_default();
            for s in &fresh {
                assert!(
                    rest.contains(s),
                    "{case}: after step {}, the fresh plan wants {s:?}, not in the rest of the first",
                    i + 1
                );
            }
            if *i == edits.last().unwrap().0 {
                assert!(
                    fresh
                        .iter()
                        .all(|s| !matches!(s, Step::ChangeListElement { .. })),
                    "{case}: nothing left to edit: {fresh:?}"
                );
            }
        }
    }
}
