//! Refusals: what Plimsoll will not do, each with what to say.

use serde::{Deserialize, Serialize};

/// Something Plimsoll will not do; any refusal stops the whole plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
    /// A custom resource's version field would go down (the operator's own
    /// webhook refuses it too, after the chart was upgraded).
    ResourceDowngrade {
        release: String,
        resource: String,
        from: String,
        to: String,
    },
    /// With `--strict`: a custom resource's version change mixed with other
    /// edits of it (the Pravega guide: do not club other edits with the
    /// upgrade).
    ResourceVersionMixedWithEdits {
        release: String,
        resource: String,
        from: String,
        to: String,
        paths: Vec<String>,
    },
    /// A custom resource's version would skip its catalog's upgrade path.
    ResourceSkippedUpgradePath {
        release: String,
        resource: String,
        from: String,
        to: String,
        required: String,
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
    /// Fewer replicas of a StatefulSet whose claim retention policy is
    /// `whenScaled: Delete`: the controller deletes the claims (and so the
    /// data) of the ordinals removed.
    ScaleDownDeletesClaims {
        release: String,
        statefulset: String,
        from: u32,
        to: u32,
        pvcs: Vec<String>,
    },
    /// Fewer replicas of a StatefulSet with claims, with `--strict`: the
    /// claims of the removed ordinals stay, unused.
    ScaleDownStrandsClaims {
        release: String,
        statefulset: String,
        from: u32,
        to: u32,
        pvcs: Vec<String>,
    },
    /// A claim template of a live StatefulSet is renamed or removed: the
    /// re-created StatefulSet's pods would start on new, empty claims while
    /// the old ones (and their data) sit unused.
    ClaimTemplateRemoved {
        release: String,
        statefulset: String,
        template: String,
        /// The desired template that takes its place, when one is new.
        renamed_to: Option<String>,
        pvcs: Vec<String>,
    },
    /// The platform release would go down.
    PlatformDowngrade { from: String, to: String },
    /// A major platform step not from the latest release of the previous
    /// line.
    PlatformMajorNotFromLatest {
        from: String,
        to: String,
        latest: String,
    },
    /// A platform release that is not a version (`main`) cannot be moved
    /// from or to.
    PlatformUnordered { tag: String, to: String },
    /// The cluster runs charts of several platform releases and the
    /// target does not complete a move between two.
    PlatformMixed { to: String, charts: Vec<String> },
    /// With `--strict`: the new state does not fit the cluster (the
    /// capacity estimate).
    Capacity { problem: String },
    /// A phased list (moved one element per edit, see
    /// [`crate::phased`]) cannot be moved: an element without its key, a
    /// key twice, an element changed in place.
    PhasedListInvalid {
        release: String,
        resource: String,
        path: String,
        reason: String,
    },
    /// A patch moving a phased list also edits other fields of the
    /// resource: each phase must change only the list.
    PhasedListMixedWithEdits {
        release: String,
        resource: String,
        path: String,
        paths: Vec<String>,
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
            | Refusal::ResourceDowngrade { release, .. }
            | Refusal::ResourceVersionMixedWithEdits { release, .. }
            | Refusal::ResourceSkippedUpgradePath { release, .. }
            | Refusal::SkippedUpgradePath { release, .. }
            | Refusal::VersionBumpWithValueChanges { release, .. }
            | Refusal::PatchNotApplicable { release, .. }
            | Refusal::ScaleDownDeletesClaims { release, .. }
            | Refusal::ScaleDownStrandsClaims { release, .. }
            | Refusal::ClaimTemplateRemoved { release, .. }
            | Refusal::PhasedListInvalid { release, .. }
            | Refusal::PhasedListMixedWithEdits { release, .. } => release,
            Refusal::PlatformDowngrade { .. }
            | Refusal::PlatformMajorNotFromLatest { .. }
            | Refusal::PlatformUnordered { .. }
            | Refusal::PlatformMixed { .. } => "platform",
            Refusal::Capacity { .. } => "capacity",
        }
    }

    /// The refusal as one sentence naming release, object and values.
    pub fn message(&self) -> String {
        match self {
            Refusal::PvcShrink { release, pvc, from, to } => {
                format!("{release}: PVC {pvc} would shrink from {from} to {to}; volumes never shrink: keep {from} or more (to use less, back up, create a smaller claim under a new name and restore)")
            }
            Refusal::StorageClassChange { release, pvc, from, to } => format!(
                "{release}: PVC {pvc} would move from storage class {from} to {to}; a claim's class cannot change in place: keep {from}, or move the data with the backup and restore procedure (or a new claim under a new name and a copy)"
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
                format!("{release}: chart would be downgraded from {from} to {to}; keep {from} or later (going back needs the backup taken before the upgrade)")
            }
            Refusal::ResourceDowngrade { release, resource, from, to } => format!(
                "{release}: {resource} would be downgraded from {from} to {to}; its operator upgrades forward only: keep {from} or later"
            ),
            Refusal::ResourceVersionMixedWithEdits { release, resource, from, to, paths } => format!(
                "{release}: {resource} {from} -> {to} is mixed with other edits of it ({}); with --strict, upgrade the version alone",
                paths.join(", ")
            ),
            Refusal::ResourceSkippedUpgradePath { release, resource, from, to, required } => format!(
                "{release}: {resource} {from} -> {to} skips the release path; upgrade to {required} first"
            ),
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
                "{release}: the patch the stack file declares for {resource} does not apply: {reason}; fix its path or `test` value in plimsoll.yaml"
            ),
            Refusal::ScaleDownDeletesClaims { release, statefulset, from, to, pvcs } => format!(
                "{release}: StatefulSet {statefulset} would go from {from} to {to} replicas with \
                 persistentVolumeClaimRetentionPolicy.whenScaled: Delete, which deletes PVC(s) {}; \
                 set whenScaled: Retain first (or back up those volumes), then scale down",
                pvcs.join(", ")
            ),
            Refusal::ScaleDownStrandsClaims { release, statefulset, from, to, pvcs } => format!(
                "{release}: StatefulSet {statefulset} would go from {from} to {to} replicas; PVC(s) {} \
                 would stay, unused (refused with --strict); scale down without --strict, \
                 or move their data first",
                pvcs.join(", ")
            ),
            Refusal::PlatformDowngrade { from, to } => format!(
                "platform release {from} -> {to} is a downgrade; platform releases move forward only: select {from} or later"
            ),
            Refusal::PlatformMajorNotFromLatest { from, to, latest } => format!(
                "platform release {from} -> {to} is a major upgrade, which must start from the latest release of the previous line: upgrade to {latest} first"
            ),
            Refusal::PlatformUnordered { tag, to } => format!(
                "platform release {tag} is not a version, so the move to {to} cannot be checked against the upgrade rules; give the release a version in the manifest"
            ),
            Refusal::Capacity { problem } => format!(
                "{problem}: add nodes or capacity, or choose a smaller sizing (`plimsoll estimate` shows what each needs); without --strict this is a warning"
            ),
            Refusal::PlatformMixed { to, charts } => format!(
                "the cluster runs charts of more than one platform release ({}), and {to} does not complete a move between two of them; select the release the cluster was moving to, so that the next sync completes that move",
                charts.join("; ")
            ),
            Refusal::PhasedListInvalid { release, resource, path, reason } => format!(
                "{release}: {path} of {resource} is moved one element per edit, but it {reason}; fix the list in the declared patch"
            ),
            Refusal::PhasedListMixedWithEdits { release, resource, path, paths } => format!(
                "{release}: the patch moving {path} of {resource} also changes {}; declare those in a patch of their own",
                paths.join(", ")
            ),
            Refusal::ClaimTemplateRemoved {
                release,
                statefulset,
                template,
                renamed_to,
                pvcs,
            } => {
                let change = match renamed_to {
                    Some(new) => format!("renames claim template {template} to {new}"),
                    None => format!("removes claim template {template}"),
                };
                let migrate = match renamed_to {
                    Some(new) => format!(
                        "copy each claim's data into {new}-{statefulset}-N first (a backup and restore, \
                         or a copy Job per ordinal), or keep the template named {template}"
                    ),
                    None => format!("back up their data first, or keep the template {template}"),
                };
                format!(
                    "{release}: StatefulSet {statefulset} {change}: the new pods would start on empty \
                     volumes while PVC(s) {} stay, unused, with the data; {migrate}",
                    if pvcs.is_empty() { "(none yet)".to_string() } else { pvcs.join(", ") }
                )
            }
        }
    }
}
