//! The chart side: version checks (downgrades and skipped upgrade paths
//! are refused) and the `helm upgrade` step with its value changes.

use crate::state::{DesiredRelease, ReleaseState};
use crate::version::{PathProblem, Version};

use super::{values_diff, Plan, PlanOptions, Refusal, ReleasePlan, Step};

/// Refuses a downgrade or a move that skips the catalog's upgrade path.
pub(super) fn check_version(
    d: &DesiredRelease,
    live: Option<&ReleaseState>,
    options: &PlanOptions,
    out: &mut Plan,
) {
    let Some(l) = live.filter(|l| l.version != d.version) else {
        return;
    };
    match (Version::parse(&l.version), Version::parse(&d.version)) {
        (Some(f), Some(t)) if t < f => out.refusals.push(Refusal::Downgrade {
            release: d.name.clone(),
            from: l.version.clone(),
            to: d.version.clone(),
        }),
        _ => {
            let catalog = options.catalogs.get(&d.chart).cloned().unwrap_or_default();
            if let Err(PathProblem::SkipsPath { required }) = catalog.check(&l.version, &d.version)
            {
                out.refusals.push(Refusal::SkippedUpgradePath {
                    release: d.name.clone(),
                    from: l.version.clone(),
                    to: d.version.clone(),
                    required,
                });
            }
        }
    }
}

/// The upgrade, when the version or the values change or a StatefulSet
/// must be re-created by it; a version bump mixed with value changes is a
/// warning, or a refusal with `strict`.
pub(super) fn plan_upgrade(
    d: &DesiredRelease,
    live: Option<&ReleaseState>,
    recreates: bool,
    options: &PlanOptions,
    rp: &mut ReleasePlan,
    out: &mut Plan,
) {
    let empty = serde_json::Value::Object(Default::default());
    let changes = values_diff(
        &options.redactor,
        live.map_or(&empty, |l| &l.values),
        &d.values,
    );
    let version_change = live.is_none_or(|l| l.version != d.version);
    if version_change && live.is_some() && !changes.is_empty() {
        let paths: Vec<String> = changes.iter().map(|c| c.path.clone()).collect();
        let from = live.map(|l| l.version.clone()).unwrap_or_default();
        if options.strict {
            out.refusals.push(Refusal::VersionBumpWithValueChanges {
                release: d.name.clone(),
                from,
                to: d.version.clone(),
                paths,
            });
        } else {
            out.warnings.push(format!(
                "{}: chart {from} -> {} is mixed with value changes ({}); consider bumping the version alone",
                d.name,
                d.version,
                paths.join(", ")
            ));
        }
    }
    if version_change || !changes.is_empty() || recreates {
        rp.steps.push(Step::HelmUpgrade {
            namespace: d.namespace.clone(),
            release: d.name.clone(),
            chart: d.chart.clone(),
            from_version: live.map(|l| l.version.clone()),
            to_version: d.version.clone(),
            changed_values: changes,
        });
    }
}
