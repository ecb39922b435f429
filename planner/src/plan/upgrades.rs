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
    drift: Vec<crate::live_drift::ObjectDrift>,
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
    let restores = match live {
        Some(l) if !drift.is_empty() => Some(super::DriftRepair {
            revision: l.revision,
            objects: drift,
        }),
        _ => None,
    };
    // A revision left pending (Helm refuses every later operation until it
    // is resolved) or failed is not in sync even when its values are the
    // desired ones: the upgrade finishes it.
    let finishes = live
        .filter(|l| l.status != "deployed" && !l.status.is_empty())
        .map(|l| super::UnfinishedRevision {
            revision: l.revision,
            status: l.status.clone(),
        });
    if version_change
        || !changes.is_empty()
        || recreates
        || restores.is_some()
        || finishes.is_some()
    {
        rp.steps.push(Step::HelmUpgrade {
            namespace: d.namespace.clone(),
            release: d.name.clone(),
            chart: d.chart.clone(),
            from_version: live.map(|l| l.version.clone()),
            to_version: d.version.clone(),
            changed_values: changes,
            pulled: d.pulled.clone(),
            restores,
            finishes,
        });
    }
}

/// A custom resource's version (its kind's version field) checked as a
/// chart's: no downgrade, and the catalog for the kind (`catalog:` keyed by
/// the kind, e.g. `PravegaCluster`) decides the upgrade path.
pub(super) fn check_resource_versions(
    d: &DesiredRelease,
    observed: &crate::state::ObservedState,
    options: &PlanOptions,
    out: &mut Plan,
) {
    // Rendered by the chart: the live value read with its health.
    for c in &d.custom_resources {
        let Some(field) = crate::health::version_field(&c.target.api_version, &c.target.kind)
        else {
            continue;
        };
        let to = c.object.pointer(field).and_then(|v| v.as_str());
        let from = observed
            .health
            .iter()
            .find(|h| h.target == c.target)
            .and_then(|h| h.version.as_deref());
        if let (Some(from), Some(to)) = (from, to) {
            check_one(d, &c.target, from, to, options, out);
            if options.strict && from != to {
                let live = observed
                    .resources
                    .iter()
                    .find(|r| r.target == c.target)
                    .and_then(|r| r.object.as_ref());
                if let Some(live) = live {
                    let mut paths = Vec::new();
                    differing_leaves(
                        c.object.get("spec"),
                        live.get("spec"),
                        "spec",
                        field,
                        &mut paths,
                    );
                    mixed(d, &c.target, from, to, paths, out);
                }
            }
        }
    }
    // Set by a declared patch: the live object before and after it.
    for p in &d.patches {
        let Some(field) = crate::health::version_field(&p.target.api_version, &p.target.kind)
        else {
            continue;
        };
        let Some(live) = observed
            .resources
            .iter()
            .find(|r| r.target == p.target)
            .and_then(|r| r.object.as_ref())
        else {
            continue;
        };
        let Ok(ops) = serde_json::from_value::<json_patch::Patch>(p.operations.clone()) else {
            continue;
        };
        let mut patched = live.clone();
        if json_patch::patch(&mut patched, &ops).is_err() {
            continue;
        }
        let from = live.pointer(field).and_then(|v| v.as_str());
        let to = patched.pointer(field).and_then(|v| v.as_str());
        if let (Some(from), Some(to)) = (from, to) {
            check_one(d, &p.target, from, to, options, out);
            if options.strict && from != to {
                let mut paths = Vec::new();
                differing_leaves(
                    patched.get("spec"),
                    live.get("spec"),
                    "spec",
                    field,
                    &mut paths,
                );
                mixed(d, &p.target, from, to, paths, out);
            }
        }
    }
}

/// The refusal for a version change with other edits, when there are.
fn mixed(
    d: &DesiredRelease,
    target: &crate::state::ResourceRef,
    from: &str,
    to: &str,
    paths: Vec<String>,
    out: &mut Plan,
) {
    if !paths.is_empty() {
        out.refusals.push(Refusal::ResourceVersionMixedWithEdits {
            release: d.name.clone(),
            resource: format!("{}/{}", target.kind, target.name),
            from: from.to_string(),
            to: to.to_string(),
            paths,
        });
    }
}

/// Leaves of `want` that `live` does not have equal (fields the API server
/// or the operator added to `live` do not count), but the version field.
fn differing_leaves(
    want: Option<&serde_json::Value>,
    live: Option<&serde_json::Value>,
    path: &str,
    version_field: &str,
    out: &mut Vec<String>,
) {
    use serde_json::Value;
    let pointer = format!("/{}", path.replace('.', "/"));
    if pointer == version_field {
        return;
    }
    match (want, live) {
        (Some(Value::Object(w)), Some(Value::Object(l))) => {
            for (k, v) in w {
                differing_leaves(
                    Some(v),
                    l.get(k),
                    &format!("{path}.{k}"),
                    version_field,
                    out,
                );
            }
        }
        (Some(w), l) if Some(w) != l => out.push(path.to_string()),
        _ => {}
    }
}

fn check_one(
    d: &DesiredRelease,
    target: &crate::state::ResourceRef,
    from: &str,
    to: &str,
    options: &PlanOptions,
    out: &mut Plan,
) {
    if from == to {
        return;
    }
    let resource = format!("{}/{}", target.kind, target.name);
    match (Version::parse(from), Version::parse(to)) {
        (Some(f), Some(t)) if t < f => out.refusals.push(Refusal::ResourceDowngrade {
            release: d.name.clone(),
            resource,
            from: from.to_string(),
            to: to.to_string(),
        }),
        _ => {
            let catalog = options
                .catalogs
                .get(&target.kind)
                .cloned()
                .unwrap_or_default();
            if let Err(PathProblem::SkipsPath { required }) = catalog.check(from, to) {
                out.refusals.push(Refusal::ResourceSkippedUpgradePath {
                    release: d.name.clone(),
                    resource,
                    from: from.to_string(),
                    to: to.to_string(),
                    required,
                });
            }
        }
    }
}

/// The platform release move (seed 001): derived from the charts the
/// cluster runs, checked against the manifest's rules.
pub(super) fn check_platform(
    p: &crate::platform::Platform,
    desired: &[DesiredRelease],
    observed: &crate::state::ObservedState,
    out: &mut Plan,
) {
    use crate::platform::MoveRefusal;
    let live: std::collections::BTreeMap<String, String> = desired
        .iter()
        .filter_map(|d| {
            observed
                .releases
                .iter()
                .find(|r| r.name == d.name && r.namespace == d.namespace)
                .map(|r| (d.name.clone(), r.version.clone()))
        })
        .collect();
    match p.plan_move(&live) {
        Ok(m) => {
            if m.completing {
                out.warnings.push(format!(
                    "the cluster runs charts of platform releases {} and {} (an interrupted move); this plan completes it",
                    m.from.as_deref().unwrap_or("?"),
                    m.to
                ));
            }
            out.platform = Some(m);
        }
        Err(MoveRefusal::Downgrade { from, to }) => {
            out.refusals.push(Refusal::PlatformDowngrade { from, to })
        }
        Err(MoveRefusal::MajorNotFromLatest { from, to, latest }) => out
            .refusals
            .push(Refusal::PlatformMajorNotFromLatest { from, to, latest }),
        Err(MoveRefusal::Unordered { tag }) => out.refusals.push(Refusal::PlatformUnordered {
            tag,
            to: p.target.clone(),
        }),
        Err(MoveRefusal::Mixed { charts }) => out.refusals.push(Refusal::PlatformMixed {
            to: p.target.clone(),
            charts: charts
                .into_iter()
                .map(|(chart, version, releases)| {
                    format!(
                        "{chart} {version} ({})",
                        if releases.is_empty() {
                            "in no release".to_string()
                        } else {
                            format!("as in {}", releases.join(", "))
                        }
                    )
                })
                .collect(),
        }),
    }
}
