//! The planner: desired and observed state in, an ordered plan of safe
//! transitions out, or the refusals that stop it.
//!
//! Per release, in stage order: expand PVCs, wait for the expansions,
//! re-create StatefulSets whose claim templates changed (orphan delete; the
//! upgrade re-creates them), `helm upgrade`, wait until ready. A release
//! with nothing to do has no entry; an up-to-date cluster gives an empty
//! plan. Nothing here performs I/O.

mod diff;
mod format;
mod operator_volumes;
mod patches;
mod refusal;
mod saved;
mod upgrades;
mod volumes;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::state::{DesiredRelease, ObservedState, ResourceRef};
use crate::version::Catalog;

pub use diff::{secret_diff, values_diff};
pub use format::{to_json, to_markdown, to_text};
pub use operator_volumes::{operator_claims, OperatorClaim, OperatorVolumeRule, MAX_ORDINALS};
pub use refusal::Refusal;
pub use saved::{observed_digest, SavedPlan, SAVED_PLAN_FORMAT};

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
        /// The repository or registry and the archive's digest.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pulled: Option<crate::state::ChartPull>,
        /// Live objects that drifted from the deployed manifest: the
        /// upgrade restores them (taking their fields back from whoever
        /// edited them).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        restores: Option<DriftRepair>,
        /// The release's newest revision is not deployed (a helm that was
        /// cut short left it pending, or it failed): the upgrade finishes
        /// it even when nothing else changed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        finishes: Option<UnfinishedRevision>,
    },
    WaitForReady {
        namespace: String,
        release: String,
        statefulsets: Vec<String>,
        deployments: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        daemonsets: Vec<String>,
        /// Custom resources the chart renders, current by their health
        /// rules.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        resources: Vec<ResourceRef>,
        /// The release's own limit (seconds), else the sync's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_seconds: Option<u64>,
    },
    /// After the upgrade: until the operator of `resource` has grown a PVC
    /// it keeps (Percona's `mongod-data-*`, Strimzi's `data-*-kafka-*`).
    WaitForOperatorExpansion {
        namespace: String,
        pvc: String,
        to: String,
        resource: ResourceRef,
    },
    /// One phase of a phased list's move (see [`crate::phased`]): one
    /// element added or removed by a JSON patch guarded by a `test` of the
    /// list as it was; done when the list already has `after`'s elements.
    ChangeListElement {
        target: ResourceRef,
        /// JSON pointer of the list.
        path: String,
        /// The element field that names an element.
        key: String,
        change: crate::phased::ListChange,
        element: String,
        /// The list's keys after this phase.
        after: Vec<String>,
    },
    /// Until a resource no longer exists (the operator removed what an
    /// element stood for).
    WaitForGone {
        namespace: String,
        release: String,
        resource: ResourceRef,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_seconds: Option<u64>,
    },
    /// After declared patches: until each patched resource is current by
    /// its health rule (the operator acted on the patch).
    WaitForHealthy {
        namespace: String,
        release: String,
        resources: Vec<ResourceRef>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_seconds: Option<u64>,
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValuesSinceBase {
    pub release: String,
    pub base: String,
    pub changes: Vec<AttributedChange>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttributedChange {
    #[serde(flatten)]
    pub change: ValueChange,
    /// Where the new value comes from, `FILE:LINE`; `None` when removed.
    pub layer: Option<String>,
}

/// Live objects of a release that drifted from its deployed manifest, and
/// the release's revision they drifted from: the repairing upgrade is done
/// once the release has a newer revision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriftRepair {
    pub revision: u32,
    pub objects: Vec<crate::live_drift::ObjectDrift>,
}

/// A release's newest revision that is not `deployed`: `pending-install`,
/// `pending-upgrade` or `pending-rollback` (the helm that began it was cut
/// short: Helm refuses every later operation until it is resolved) or
/// `failed`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnfinishedRevision {
    pub revision: u32,
    pub status: String,
}

impl UnfinishedRevision {
    pub fn is_pending(&self) -> bool {
        self.status.starts_with("pending-")
    }
}

/// The plan of one release.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleasePlan {
    pub release: String,
    pub namespace: String,
    pub stage: String,
    pub steps: Vec<Step>,
    /// Every PVC of the release's StatefulSets, changed or not (for review).
    pub pvcs: Vec<PvcRow>,
    /// With an upgrade: what changes in the release's objects, against the
    /// manifest stored with the deployed release.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<crate::manifest_diff::ObjectChange>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PvcRow {
    pub pvc: String,
    pub current: String,
    pub desired: String,
    pub storage_class: String,
    pub expandable: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub schema_version: u32,
    pub refusals: Vec<Refusal>,
    pub warnings: Vec<String>,
    pub releases: Vec<ReleasePlan>,
    /// With a base revision: rendered values changes per release.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values_since_base: Vec<ValuesSinceBase>,
    /// The platform release move, with a release manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<crate::platform::PlatformMove>,
    /// Will the new state fit (an estimate); with changes only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<crate::capacity::Capacity>,
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
    /// Which values are secret (the stack file's `redact:` patterns).
    pub redactor: crate::redact::Redactor,
    /// List fields moved one element per edit (built-ins and the stack
    /// file's `phasedLists:`).
    pub phased_lists: crate::phased::PhasedLists,
    /// The stack file's `operatorVolumes:` (claims an operator keeps for
    /// a kind), beside the built-ins.
    pub operator_volumes: Vec<OperatorVolumeRule>,
    /// The release manifest and the platform release selected.
    pub platform: Option<crate::platform::Platform>,
    /// Lines of context in the manifest diff (`--context N`); `None`:
    /// [`crate::manifest_diff::DEFAULT_CONTEXT`].
    pub manifest_context: Option<usize>,
    /// The stack file's `storagePools:` (local and replicated pools the
    /// capacity check places claims on).
    pub storage_pools: Vec<crate::capacity::StoragePool>,
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
                pulled,
                restores,
                finishes,
                ..
            } => {
                let drifted = restores.as_ref().map_or(0, |r| r.objects.len());
                let mut version = match from_version {
                    Some(f) if f != to_version => format!("{chart} {f} -> {to_version}"),
                    Some(_) => format!("{chart} {to_version}"),
                    None => format!("install {chart} {to_version}"),
                };
                if let Some(p) = pulled {
                    // The first 12 hex digits name the archive as a short
                    // commit id does.
                    let short = p.digest.get(..19).unwrap_or(&p.digest);
                    version.push_str(&format!(" from {} {short}", p.source));
                }
                let restored = if drifted > 0 {
                    format!("; restores {drifted} drifted object(s)")
                } else {
                    String::new()
                };
                let finished = match finishes {
                    Some(u) if u.is_pending() => {
                        format!("; finishes revision {}, left {}", u.revision, u.status)
                    }
                    Some(u) => format!("; retries revision {}, which is {}", u.revision, u.status),
                    None => String::new(),
                };
                format!(
                    "helm upgrade --install {release} ({version}, {} value change(s){restored}{finished})",
                    changed_values.len()
                )
            }
            Step::WaitForReady {
                statefulsets,
                deployments,
                daemonsets,
                resources,
                ..
            } => format!(
                "wait until ready: {}",
                statefulsets
                    .iter()
                    .map(|s| format!("statefulset/{s}"))
                    .chain(deployments.iter().map(|d| format!("deployment/{d}")))
                    .chain(daemonsets.iter().map(|d| format!("daemonset/{d}")))
                    .chain(resources.iter().map(|r| format!("{}/{}", r.kind, r.name)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Step::WaitForOperatorExpansion {
                pvc, to, resource, ..
            } => format!(
                "wait until {}/{} has grown PVC {pvc} to {to} (its operator resizes it)",
                resource.kind, resource.name
            ),
            Step::ChangeListElement {
                target,
                path,
                key,
                change,
                element,
                after,
            } => {
                let (verb, prep) = match change {
                    crate::phased::ListChange::Add => ("add", "to"),
                    crate::phased::ListChange::Remove => ("remove", "from"),
                };
                format!(
                    "{verb} {key} {element} {prep} {path} of {}/{} (then [{}])",
                    target.kind,
                    target.name,
                    after.join(", ")
                )
            }
            Step::WaitForGone { resource, .. } => format!(
                "wait until {}/{} is gone (its operator removes it)",
                resource.kind, resource.name
            ),
            Step::WaitForHealthy { resources, .. } => format!(
                "wait until current by their health rules: {}",
                resources
                    .iter()
                    .map(|r| format!("{}/{}", r.kind, r.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// Plans the transition from `observed` to `desired` (releases in stage
/// order). Per release: version checks, volumes (expand, wait, re-create
/// StatefulSets whose claim templates changed), declared patches, the
/// upgrade and the readiness wait; any refusal stops the whole plan.
pub fn plan(desired: &[DesiredRelease], observed: &ObservedState, options: &PlanOptions) -> Plan {
    let mut out = Plan {
        schema_version: PLAN_SCHEMA_VERSION,
        ..Plan::default()
    };
    if let Some(p) = &options.platform {
        upgrades::check_platform(p, desired, observed, &mut out);
    }
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
            objects: Vec::new(),
        };
        upgrades::check_version(d, live, options, &mut out);
        upgrades::check_resource_versions(d, observed, options, &mut out);
        let volumes = volumes::plan_volumes(d, observed, options.strict, &mut rp, &mut out);
        let operator_growth = operator_volumes::plan_operator_volumes(
            d,
            observed,
            &options.operator_volumes,
            &mut rp,
            &mut out,
        );
        patches::plan_patches(d, observed, options, &mut rp, &mut out);
        let patched: Vec<ResourceRef> = rp
            .steps
            .iter()
            .filter_map(|s| match s {
                Step::PatchResource { target, .. } => Some(target.clone()),
                _ => None,
            })
            .collect();
        if !patched.is_empty() {
            rp.steps.push(Step::WaitForHealthy {
                namespace: d.namespace.clone(),
                release: d.name.clone(),
                resources: patched,
                timeout_seconds: d.ready_timeout,
            });
        }
        volumes.push_recreates(d, &mut rp);
        let drift = match (live, &observed.objects) {
            (Some(l), Some(objects)) if !l.manifest.is_empty() => crate::live_drift::release_drift(
                &l.manifest,
                &d.namespace,
                objects,
                &options.redactor,
            ),
            _ => Vec::new(),
        };
        upgrades::plan_upgrade(
            d,
            live,
            !volumes.recreate.is_empty(),
            drift,
            options,
            &mut rp,
            &mut out,
        );
        for (pvc, to, resource) in operator_growth {
            rp.steps.push(Step::WaitForOperatorExpansion {
                namespace: d.namespace.clone(),
                pvc,
                to,
                resource,
            });
        }
        // A custom resource that is not current (an operator still at work,
        // or failed) is waited on even when nothing else changes, so that
        // a later stage never starts before it settles.
        let unsettled: Vec<&crate::state::ObservedHealth> = d
            .custom_resources
            .iter()
            .filter_map(|c| observed.health.iter().find(|h| h.target == c.target))
            .filter(|h| !h.health.is_current())
            .collect();
        for h in &unsettled {
            out.warnings.push(format!(
                "{}: {}/{} is {}",
                d.name,
                h.target.kind,
                h.target.name,
                h.health.describe()
            ));
        }
        if !rp.steps.is_empty() && !d.requires.is_empty() {
            for r in &d.requires {
                match observed.health.iter().find(|h| h.target == *r) {
                    Some(h) if h.health.is_current() => {}
                    Some(h) => out.warnings.push(format!(
                        "{}: precondition {}/{} is {}; the sync waits for it before the release's first step",
                        d.name,
                        r.kind,
                        r.name,
                        h.health.describe()
                    )),
                    None => {}
                }
            }
            rp.steps.insert(
                0,
                Step::WaitForHealthy {
                    namespace: d.namespace.clone(),
                    release: d.name.clone(),
                    resources: d.requires.clone(),
                    timeout_seconds: d.ready_timeout,
                },
            );
        }
        let upgrades = rp
            .steps
            .iter()
            .any(|s| matches!(s, Step::HelmUpgrade { .. }));
        if let (true, Some(l)) = (upgrades, live) {
            if !l.manifest.is_empty() && !d.manifest.is_empty() {
                match crate::manifest_diff::manifest_changes(
                    &l.manifest,
                    &d.manifest,
                    &d.namespace,
                    &options.redactor,
                    options
                        .manifest_context
                        .unwrap_or(crate::manifest_diff::DEFAULT_CONTEXT),
                ) {
                    Ok(objects) => rp.objects = objects,
                    Err(why) => out
                        .warnings
                        .push(format!("{}: no manifest diff: {why}", d.name)),
                }
            }
        }
        let nothing_to_wait_for = d.statefulsets.is_empty()
            && d.deployments.is_empty()
            && d.daemonsets.is_empty()
            && d.custom_resources.is_empty();
        if (!rp.steps.is_empty() || !unsettled.is_empty()) && nothing_to_wait_for {
            out.releases.push(rp);
        } else if !rp.steps.is_empty() || !unsettled.is_empty() {
            rp.steps.push(Step::WaitForReady {
                namespace: d.namespace.clone(),
                release: d.name.clone(),
                statefulsets: d.statefulsets.iter().map(|s| s.name.clone()).collect(),
                deployments: d.deployments.clone(),
                daemonsets: d.daemonsets.clone(),
                resources: d
                    .custom_resources
                    .iter()
                    .map(|c| c.target.clone())
                    .collect(),
                timeout_seconds: d.ready_timeout,
            });
            out.releases.push(rp);
        }
    }
    if out.has_changes() {
        let mut capacity = crate::capacity::capacity(desired, observed, &options.storage_pools);
        // Claims operators keep grow too (Percona's, Strimzi's).
        let operator_claims: Vec<(String, String, String)> = out
            .releases
            .iter()
            .flat_map(|r| &r.steps)
            .filter_map(|s| match s {
                Step::WaitForOperatorExpansion {
                    namespace, pvc, to, ..
                } => Some((namespace.clone(), pvc.clone(), to.clone())),
                _ => None,
            })
            .collect();
        crate::capacity::add_operator_growth(&mut capacity, observed, &operator_claims);
        for problem in capacity.problems() {
            if options.strict {
                out.refusals.push(Refusal::Capacity { problem });
            } else {
                out.warnings.push(format!("capacity: {problem}"));
            }
        }
        out.capacity = Some(capacity);
    }
    out
}
