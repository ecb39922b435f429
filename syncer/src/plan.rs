//! The planner: desired and observed state in, an ordered plan of safe
//! transitions out, or the refusals that stop it.
//!
//! Per release, in stage order: expand PVCs, wait for the expansions,
//! re-create StatefulSets whose claim templates changed (orphan delete; the
//! upgrade re-creates them), `helm upgrade`, wait until ready. A release
//! with nothing to do has no entry; an up-to-date cluster gives an empty
//! plan. Nothing here performs I/O.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::state::{
    quantity_bytes, ClaimTemplate, DesiredRelease, ObservedState, ResourceRef, StatefulSetState,
};
use crate::version::{Catalog, PathProblem, Version};

/// Version of the plan's JSON form.
pub const PLAN_SCHEMA_VERSION: u32 = 1;

/// One transition, with the reason for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Step {
    ExpandPvc {
        namespace: String,
        pvc: String,
        from: String,
        to: String,
        storage_class: String,
    },
    WaitForExpansion {
        namespace: String,
        pvc: String,
        to: String,
    },
    PatchResource {
        /// Not flattened: the resource's `kind` would collide with the
        /// step's.
        target: ResourceRef,
        /// The RFC 6902 operations.
        operations: serde_json::Value,
        /// The paths the patch changes, values redacted where secret.
        changes: Vec<ValueChange>,
    },
    RecreateStatefulSet {
        namespace: String,
        statefulset: String,
        uid: String,
        reason: String,
    },
    HelmUpgrade {
        namespace: String,
        release: String,
        chart: String,
        from_version: Option<String>,
        to_version: String,
        changed_values: Vec<ValueChange>,
    },
    WaitForReady {
        namespace: String,
        release: String,
        statefulsets: Vec<String>,
        deployments: Vec<String>,
    },
}

/// A change of one values path, secrets redacted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValueChange {
    pub path: String,
    /// The path as keys (keys may contain dots).
    #[serde(skip)]
    pub keys: Vec<String>,
    pub from: Option<String>,
    pub to: Option<String>,
}

impl ValueChange {
    pub fn shown_from(&self) -> &str {
        self.from.as_deref().unwrap_or("(unset)")
    }

    pub fn shown_to(&self) -> &str {
        self.to.as_deref().unwrap_or("(unset)")
    }

    /// `FROM -> TO`, `(unset)` for an absent side.
    pub fn transition(&self) -> String {
        format!("{} -> {}", self.shown_from(), self.shown_to())
    }
}

/// The rendered values of a release changed between a base revision and
/// the planned one, each change with the layer (file:line) that set it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ValuesSinceBase {
    pub release: String,
    pub base: String,
    pub changes: Vec<AttributedChange>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AttributedChange {
    #[serde(flatten)]
    pub change: ValueChange,
    /// Where the new value comes from, `FILE:LINE`; `None` when removed.
    pub layer: Option<String>,
}

/// Something Plimsoll will not do; any refusal stops the whole plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Refusal {
    PvcShrink {
        release: String,
        pvc: String,
        from: String,
        to: String,
    },
    StorageClassChange {
        release: String,
        pvc: String,
        from: String,
        to: String,
    },
    NotExpandable {
        release: String,
        pvc: String,
        storage_class: String,
        from: String,
        to: String,
    },
    Downgrade {
        release: String,
        from: String,
        to: String,
    },
    SkippedUpgradePath {
        release: String,
        from: String,
        to: String,
        required: String,
    },
    VersionBumpWithValueChanges {
        release: String,
        from: String,
        to: String,
        paths: Vec<String>,
    },
    PatchNotApplicable {
        release: String,
        resource: String,
        reason: String,
    },
}

impl Refusal {
    /// The release refused.
    pub fn release(&self) -> &str {
        match self {
            Refusal::PvcShrink { release, .. }
            | Refusal::StorageClassChange { release, .. }
            | Refusal::NotExpandable { release, .. }
            | Refusal::Downgrade { release, .. }
            | Refusal::SkippedUpgradePath { release, .. }
            | Refusal::VersionBumpWithValueChanges { release, .. }
            | Refusal::PatchNotApplicable { release, .. } => release,
        }
    }

    /// The refusal as one sentence naming release, object and values.
    pub fn message(&self) -> String {
        match self {
            Refusal::PvcShrink { release, pvc, from, to } => {
                format!("{release}: PVC {pvc} would shrink from {from} to {to}; volumes never shrink")
            }
            Refusal::StorageClassChange { release, pvc, from, to } => format!(
                "{release}: PVC {pvc} would move from storage class {from} to {to}; a claim's class cannot change in place"
            ),
            Refusal::NotExpandable {
                release,
                pvc,
                storage_class,
                from,
                to,
            } => format!(
                "{release}: PVC {pvc} needs {from} -> {to} but storage class {storage_class} does not allow volume expansion; \
                 the backup, reinstall and restore procedure is required (never run automatically)"
            ),
            Refusal::Downgrade { release, from, to } => {
                format!("{release}: chart would be downgraded from {from} to {to}")
            }
            Refusal::SkippedUpgradePath {
                release,
                from,
                to,
                required,
            } => format!("{release}: upgrading {from} -> {to} skips the release path; upgrade to {required} first"),
            Refusal::VersionBumpWithValueChanges { release, from, to, paths } => format!(
                "{release}: chart {from} -> {to} is mixed with value changes ({}); with --strict, bump the version alone",
                paths.join(", ")
            ),
            Refusal::PatchNotApplicable { release, resource, reason } => format!(
                "{release}: the patch the stack file declares for {resource} does not apply: {reason}"
            ),
        }
    }
}

/// The plan of one release.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReleasePlan {
    pub release: String,
    pub namespace: String,
    pub stage: String,
    pub steps: Vec<Step>,
    /// Every PVC of the release's StatefulSets, changed or not (for review).
    pub pvcs: Vec<PvcRow>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PvcRow {
    pub pvc: String,
    pub current: String,
    pub desired: String,
    pub storage_class: String,
    pub expandable: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub schema_version: u32,
    pub refusals: Vec<Refusal>,
    pub warnings: Vec<String>,
    pub releases: Vec<ReleasePlan>,
    /// With a base revision: rendered values changes per release.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub values_since_base: Vec<ValuesSinceBase>,
}

impl Plan {
    pub fn has_changes(&self) -> bool {
        self.releases.iter().any(|r| !r.steps.is_empty())
    }

    /// `terraform plan -detailed-exitcode`: 0 nothing to do, 2 changes, 1
    /// refused.
    pub fn exit_code(&self) -> u8 {
        if !self.refusals.is_empty() {
            1
        } else if self.has_changes() {
            2
        } else {
            0
        }
    }
}

/// What the planner is told besides the two states.
#[derive(Clone, Debug, Default)]
pub struct PlanOptions {
    /// Release catalogs by chart name (upgrade paths).
    pub catalogs: BTreeMap<String, Catalog>,
    /// Refuse (rather than warn about) a version bump mixed with value
    /// changes.
    pub strict: bool,
}

/// Keys whose values are never shown.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "password",
        "token",
        "secret",
        "key",
        "credential",
        "certificate",
    ]
    .iter()
    .any(|s| k.contains(s))
}

/// Differences between two values trees, as paths; values of secret-looking
/// keys are redacted.
pub fn values_diff(from: &serde_json::Value, to: &serde_json::Value) -> Vec<ValueChange> {
    let mut out = Vec::new();
    diff_into(from, to, &mut Vec::new(), false, &mut out);
    out
}

fn show(v: &serde_json::Value, secret: bool) -> String {
    if secret {
        return "(redacted)".to_string();
    }
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn diff_into(
    from: &serde_json::Value,
    to: &serde_json::Value,
    path: &mut Vec<String>,
    secret: bool,
    out: &mut Vec<ValueChange>,
) {
    use serde_json::Value;
    match (from, to) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                path.push(k.clone());
                let s = secret || is_secret_key(k);
                match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) => diff_into(x, y, path, s, out),
                    (Some(x), None) => out.push(ValueChange {
                        path: path.join("."),
                        keys: path.clone(),
                        from: Some(show(x, s)),
                        to: None,
                    }),
                    (None, Some(y)) => out.push(ValueChange {
                        path: path.join("."),
                        keys: path.clone(),
                        from: None,
                        to: Some(show(y, s)),
                    }),
                    (None, None) => {}
                }
                path.pop();
            }
        }
        (a, b) if a != b => out.push(ValueChange {
            path: path.join("."),
            keys: path.clone(),
            from: Some(show(a, secret)),
            to: Some(show(b, secret)),
        }),
        _ => {}
    }
}

fn templates_equal(a: &[ClaimTemplate], b: &[ClaimTemplate]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.name == y.name
                && x.storage_class == y.storage_class
                && quantity_bytes(&x.size) == quantity_bytes(&y.size)
        })
}

enum PatchEffect {
    /// The resource already is as the patch makes it.
    Applied,
    Missing,
    Fails(String),
    Changes(Vec<ValueChange>),
}

/// What applying a declared patch to the observed resource would change.
fn patch_effect(p: &crate::state::DesiredPatch, observed: &ObservedState) -> PatchEffect {
    let Some(object) = observed
        .resources
        .iter()
        .find(|r| r.target == p.target)
        .and_then(|r| r.object.as_ref())
    else {
        return PatchEffect::Missing;
    };
    let ops: json_patch::Patch = match serde_json::from_value(p.operations.clone()) {
        Ok(ops) => ops,
        Err(e) => return PatchEffect::Fails(format!("not an RFC 6902 patch: {e}")),
    };
    let mut patched = object.clone();
    if let Err(e) = json_patch::patch(&mut patched, &ops) {
        return PatchEffect::Fails(e.to_string());
    }
    let changes = values_diff(object, &patched);
    if changes.is_empty() {
        PatchEffect::Applied
    } else {
        PatchEffect::Changes(changes)
    }
}

/// Plans the transition from `observed` to `desired` (releases in stage
/// order).
pub fn plan(desired: &[DesiredRelease], observed: &ObservedState, options: &PlanOptions) -> Plan {
    let mut out = Plan {
        schema_version: PLAN_SCHEMA_VERSION,
        ..Plan::default()
    };
    for d in desired {
        let live = observed
            .releases
            .iter()
            .find(|r| r.name == d.name && r.namespace == d.namespace);
        let mut rp = ReleasePlan {
            release: d.name.clone(),
            namespace: d.namespace.clone(),
            stage: d.stage.clone(),
            steps: Vec::new(),
            pvcs: Vec::new(),
        };

        // Chart version: downgrades and skipped paths are refused.
        if let Some(l) = live {
            if l.version != d.version {
                match (Version::parse(&l.version), Version::parse(&d.version)) {
                    (Some(f), Some(t)) if t < f => out.refusals.push(Refusal::Downgrade {
                        release: d.name.clone(),
                        from: l.version.clone(),
                        to: d.version.clone(),
                    }),
                    _ => {
                        let catalog = options.catalogs.get(&d.chart).cloned().unwrap_or_default();
                        if let Err(PathProblem::SkipsPath { required }) =
                            catalog.check(&l.version, &d.version)
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
        }

        // Volumes: PVCs of each StatefulSet the chart renders.
        let mut expansions = Vec::new();
        let mut resizing: Vec<(String, String)> = Vec::new();
        let mut recreate = Vec::new();
        for dsts in &d.statefulsets {
            let live_sts: Option<&StatefulSetState> = observed
                .statefulsets
                .iter()
                .find(|s| s.name == dsts.name && s.namespace == d.namespace);
            for tmpl in &dsts.claim_templates {
                let prefix = format!("{}-{}-", tmpl.name, dsts.name);
                let mut claims: Vec<_> = observed
                    .pvcs
                    .iter()
                    .filter(|p| p.namespace == d.namespace)
                    .filter(|p| {
                        p.name.strip_prefix(&prefix).is_some_and(|ord| {
                            !ord.is_empty() && ord.bytes().all(|b| b.is_ascii_digit())
                        })
                    })
                    .collect();
                claims.sort_by_key(|p| p.name.clone());
                for pvc in claims {
                    let class = pvc.storage_class.clone().unwrap_or_default();
                    let expandable = observed
                        .storage_classes
                        .iter()
                        .find(|s| s.name == class)
                        .is_some_and(|s| s.allow_volume_expansion);
                    rp.pvcs.push(PvcRow {
                        pvc: pvc.name.clone(),
                        current: pvc.request.clone(),
                        desired: tmpl.size.clone(),
                        storage_class: class.clone(),
                        expandable,
                    });
                    if let Some(want) = &tmpl.storage_class {
                        if *want != class {
                            out.refusals.push(Refusal::StorageClassChange {
                                release: d.name.clone(),
                                pvc: pvc.name.clone(),
                                from: class.clone(),
                                to: want.clone(),
                            });
                            continue;
                        }
                    }
                    let (have, want) = (quantity_bytes(&pvc.request), quantity_bytes(&tmpl.size));
                    if want < have {
                        out.refusals.push(Refusal::PvcShrink {
                            release: d.name.clone(),
                            pvc: pvc.name.clone(),
                            from: pvc.request.clone(),
                            to: tmpl.size.clone(),
                        });
                    } else if want > have {
                        if !expandable {
                            out.refusals.push(Refusal::NotExpandable {
                                release: d.name.clone(),
                                pvc: pvc.name.clone(),
                                storage_class: class.clone(),
                                from: pvc.request.clone(),
                                to: tmpl.size.clone(),
                            });
                        } else {
                            expansions.push((
                                pvc.name.clone(),
                                pvc.request.clone(),
                                tmpl.size.clone(),
                                class.clone(),
                            ));
                        }
                    } else if pvc
                        .capacity
                        .as_deref()
                        .and_then(quantity_bytes)
                        .is_some_and(|c| Some(c) < have)
                    {
                        // Requested already (an interrupted sync, or by
                        // hand) but not yet grown: wait before anything
                        // re-creates the StatefulSet.
                        resizing.push((pvc.name.clone(), pvc.request.clone()));
                    }
                }
            }
            if let Some(l) = live_sts {
                if !templates_equal(&l.claim_templates, &dsts.claim_templates) {
                    recreate.push((l.name.clone(), l.uid.clone()));
                }
            }
        }
        for (pvc, from, to, storage_class) in &expansions {
            rp.steps.push(Step::ExpandPvc {
                namespace: d.namespace.clone(),
                pvc: pvc.clone(),
                from: from.clone(),
                to: to.clone(),
                storage_class: storage_class.clone(),
            });
        }
        let waits = expansions
            .iter()
            .map(|(pvc, _, to, _)| (pvc, to))
            .chain(resizing.iter().map(|(pvc, to)| (pvc, to)));
        for (pvc, to) in waits {
            rp.steps.push(Step::WaitForExpansion {
                namespace: d.namespace.clone(),
                pvc: pvc.clone(),
                to: to.clone(),
            });
        }
        for p in &d.patches {
            match patch_effect(p, observed) {
                PatchEffect::Applied => {}
                PatchEffect::Missing => out.warnings.push(format!(
                    "{}: {} does not exist (yet); its declared patch is not planned",
                    d.name, p.target
                )),
                PatchEffect::Fails(reason) => out.refusals.push(Refusal::PatchNotApplicable {
                    release: d.name.clone(),
                    resource: p.target.to_string(),
                    reason,
                }),
                PatchEffect::Changes(changes) => rp.steps.push(Step::PatchResource {
                    target: p.target.clone(),
                    operations: p.operations.clone(),
                    changes,
                }),
            }
        }
        for (name, uid) in &recreate {
            rp.steps.push(Step::RecreateStatefulSet {
                namespace: d.namespace.clone(),
                statefulset: name.clone(),
                uid: uid.clone(),
                reason: "volumeClaimTemplates changed; delete with orphan propagation, the upgrade re-creates it"
                    .to_string(),
            });
        }

        // The upgrade itself.
        let empty = serde_json::Value::Object(Default::default());
        let changes = values_diff(live.map_or(&empty, |l| &l.values), &d.values);
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
        if version_change || !changes.is_empty() || !recreate.is_empty() {
            rp.steps.push(Step::HelmUpgrade {
                namespace: d.namespace.clone(),
                release: d.name.clone(),
                chart: d.chart.clone(),
                from_version: live.map(|l| l.version.clone()),
                to_version: d.version.clone(),
                changed_values: changes,
            });
        }
        if !rp.steps.is_empty() {
            rp.steps.push(Step::WaitForReady {
                namespace: d.namespace.clone(),
                release: d.name.clone(),
                statefulsets: d.statefulsets.iter().map(|s| s.name.clone()).collect(),
                deployments: d.deployments.clone(),
            });
            out.releases.push(rp);
        }
    }
    out
}

impl Step {
    /// One line for people.
    pub fn describe(&self) -> String {
        match self {
            Step::ExpandPvc {
                pvc,
                from,
                to,
                storage_class,
                ..
            } => format!("expand PVC {pvc} from {from} to {to} (storage class {storage_class})"),
            Step::WaitForExpansion { pvc, to, .. } => {
                format!("wait until PVC {pvc} has {to} of capacity and no resize condition")
            }
            Step::PatchResource {
                target, changes, ..
            } => format!(
                "patch {target}: {}",
                changes
                    .iter()
                    .map(|c| format!("{} {}", c.path, c.transition()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Step::RecreateStatefulSet {
                statefulset,
                reason,
                ..
            } => {
                format!("delete StatefulSet {statefulset} with orphan propagation ({reason})")
            }
            Step::HelmUpgrade {
                release,
                chart,
                from_version,
                to_version,
                changed_values,
                ..
            } => {
                let version = match from_version {
                    Some(f) if f != to_version => format!("{chart} {f} -> {to_version}"),
                    Some(_) => format!("{chart} {to_version}"),
                    None => format!("install {chart} {to_version}"),
                };
                format!(
                    "helm upgrade --install {release} ({version}, {} value change(s))",
                    changed_values.len()
                )
            }
            Step::WaitForReady {
                statefulsets,
                deployments,
                ..
            } => format!(
                "wait until ready: {}",
                statefulsets
                    .iter()
                    .map(|s| format!("statefulset/{s}"))
                    .chain(deployments.iter().map(|d| format!("deployment/{d}")))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// The plan as text for a terminal.
pub fn to_text(plan: &Plan) -> String {
    let mut out = String::new();
    for r in &plan.refusals {
        out.push_str(&format!("REFUSED: {}\n", r.message()));
    }
    for w in &plan.warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    if plan.releases.is_empty() && plan.refusals.is_empty() {
        out.push_str("No changes: the cluster matches the desired state.\n");
    }
    for v in &plan.values_since_base {
        out.push_str(&format!(
            "\nValues of {} changed since {}:\n",
            v.release, v.base
        ));
        for c in &v.changes {
            out.push_str(&format!(
                "  {}: {}{}\n",
                c.change.path,
                c.change.transition(),
                c.layer
                    .as_deref()
                    .map(|l| format!("  ({l})"))
                    .unwrap_or_default()
            ));
        }
    }
    for r in &plan.releases {
        out.push_str(&format!(
            "\n{} ({}, stage {})\n",
            r.release, r.namespace, r.stage
        ));
        for (i, s) in r.steps.iter().enumerate() {
            out.push_str(&format!("  {}. {}\n", i + 1, s.describe()));
            if let Step::HelmUpgrade { changed_values, .. } = s {
                for c in changed_values {
                    out.push_str(&format!("       {}: {}\n", c.path, c.transition()));
                }
            }
        }
    }
    out
}

/// The plan as Markdown for a pull-request comment: summary line,
/// refusals first, then one section per release.
pub fn to_markdown(plan: &Plan) -> String {
    let steps: usize = plan.releases.iter().map(|r| r.steps.len()).sum();
    let mut out = String::new();
    if !plan.refusals.is_empty() {
        out.push_str(&format!(
            "**Plimsoll refuses this change** ({} refusal(s)); nothing will be applied.\n\n",
            plan.refusals.len()
        ));
        for r in &plan.refusals {
            out.push_str(&format!("> :no_entry: {}\n", r.message()));
        }
        out.push('\n');
    } else if steps == 0 {
        out.push_str("**No changes.** The cluster matches the desired state.\n");
        markdown_values_since_base(plan, &mut out);
        return out;
    } else {
        out.push_str(&format!(
            "**Plan:** {steps} step(s) in {} release(s).\n\n",
            plan.releases.len()
        ));
    }
    for w in &plan.warnings {
        out.push_str(&format!("> :warning: {w}\n"));
    }
    for r in &plan.releases {
        out.push_str(&format!(
            "\n### `{}` ({}, stage {})\n\n",
            r.release, r.namespace, r.stage
        ));
        if !r.pvcs.is_empty() {
            out.push_str(
                "| PVC | current | desired | storage class | expandable |\n|---|---|---|---|---|\n",
            );
            for p in &r.pvcs {
                out.push_str(&format!(
                    "| {} | {} | {} | {} | {} |\n",
                    p.pvc,
                    p.current,
                    p.desired,
                    p.storage_class,
                    if p.expandable { "yes" } else { "no" }
                ));
            }
            out.push('\n');
        }
        for (i, s) in r.steps.iter().enumerate() {
            out.push_str(&format!("{}. {}\n", i + 1, s.describe()));
        }
    }
    markdown_values_since_base(plan, &mut out);
    out
}

fn markdown_values_since_base(plan: &Plan, out: &mut String) {
    for v in &plan.values_since_base {
        out.push_str(&format!(
            "\n#### Values of `{}` changed since `{}`\n\n",
            v.release, v.base
        ));
        out.push_str("| path | before | after | set by |\n|---|---|---|---|\n");
        for c in &v.changes {
            out.push_str(&format!(
                "| `{}` | {} | {} | {} |\n",
                c.change.path,
                c.change.shown_from(),
                c.change.shown_to(),
                c.layer.as_deref().unwrap_or("")
            ));
        }
    }
}

/// The plan as JSON (schema [`PLAN_SCHEMA_VERSION`]).
pub fn to_json(plan: &Plan) -> String {
    serde_json::to_string_pretty(plan).unwrap_or_default() + "\n"
}
