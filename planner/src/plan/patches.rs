//! Declared operator patches (plan step 3): planned only when they would
//! still change the live object; one that does not apply is a refusal.

use crate::state::{DesiredPatch, DesiredRelease, ObservedState};

use crate::redact::Redactor;

use super::{secret_diff, values_diff, Plan, Refusal, ReleasePlan, Step, ValueChange};

enum PatchEffect {
    /// The resource already is as the patch makes it.
    Applied,
    Missing,
    Fails(String),
    Changes(Vec<ValueChange>),
}

/// What applying a declared patch to the observed resource would change.
fn patch_effect(p: &DesiredPatch, observed: &ObservedState, redactor: &Redactor) -> PatchEffect {
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
    let changes = if p.target.is_secret() {
        secret_diff(redactor, object, &patched)
    } else {
        values_diff(redactor, object, &patched)
    };
    if changes.is_empty() {
        PatchEffect::Applied
    } else {
        PatchEffect::Changes(changes)
    }
}

/// Plans the release's declared patches into `rp`; the step carries the
/// operations redacted (the executor takes them from the desired state).
pub(super) fn plan_patches(
    d: &DesiredRelease,
    observed: &ObservedState,
    redactor: &Redactor,
    rp: &mut ReleasePlan,
    out: &mut Plan,
) {
    for p in &d.patches {
        match patch_effect(p, observed, redactor) {
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
                operations: redactor.redact_operations(&p.operations, p.target.is_secret()),
                changes,
            }),
        }
    }
}
