//! Declared operator patches (plan step 3): planned only when they would
//! still change the live object; one that does not apply is a refusal. A
//! patch that changes a phased list ([`crate::phased`]) becomes its phases:
//! one element per edit, an add before each removal, a health wait
//! between.

use crate::state::{DesiredPatch, DesiredRelease, ObservedState};

use crate::phased::{self, ListChange, PhasedList};
use crate::redact::Redactor;
use crate::state::ResourceRef;

use super::{secret_diff, values_diff, Plan, PlanOptions, Refusal, ReleasePlan, Step, ValueChange};

enum PatchEffect {
    /// The resource already is as the patch makes it.
    Applied,
    Missing,
    Fails(String),
    Changes {
        changes: Vec<ValueChange>,
        live: serde_json::Value,
        patched: serde_json::Value,
    },
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
        PatchEffect::Changes {
            changes,
            live: object.clone(),
            patched,
        }
    }
}

/// Plans the release's declared patches into `rp`; the step carries the
/// operations redacted (the executor takes them from the desired state).
pub(super) fn plan_patches(
    d: &DesiredRelease,
    observed: &ObservedState,
    options: &PlanOptions,
    rp: &mut ReleasePlan,
    out: &mut Plan,
) {
    let redactor = &options.redactor;
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
            PatchEffect::Changes {
                changes,
                live,
                patched,
            } => {
                let moved = options
                    .phased_lists
                    .for_target(&p.target)
                    .find(|rule| live.pointer(&rule.path) != patched.pointer(&rule.path));
                let operations = redactor.redact_operations(&p.operations, p.target.is_secret());
                match moved {
                    Some(rule) => plan_phases(
                        d,
                        &p.target,
                        rule,
                        (&live, &patched),
                        (&operations, &changes),
                        rp,
                        out,
                    ),
                    None => rp.steps.push(Step::PatchResource {
                        target: p.target.clone(),
                        operations,
                        changes,
                    }),
                }
            }
        }
    }
}

/// The phases of a phased list's move. Per element added: (first, a wait
/// until the resource is current: cStor refuses an edit while a scale is
/// in progress) the edit, and a wait until the resource and what the
/// element stands for are current; per element removed: a wait until the
/// resource, the `before_remove` resources and what every staying element
/// stands for are current, the edit, a
/// wait until what it stood for is gone and the resource is current.
fn plan_phases(
    d: &DesiredRelease,
    target: &ResourceRef,
    rule: &PhasedList,
    (live, patched): (&serde_json::Value, &serde_json::Value),
    (operations, changes): (&serde_json::Value, &[ValueChange]),
    rp: &mut ReleasePlan,
    out: &mut Plan,
) {
    let invalid = |reason: String| Refusal::PhasedListInvalid {
        release: d.name.clone(),
        resource: target.to_string(),
        path: rule.path.clone(),
        reason,
    };
    let list_path = rule.path.trim_start_matches('/').replace('/', ".");
    let others: Vec<String> = changes
        .iter()
        .filter(|c| {
            c.path != list_path
                && !c.path.starts_with(&format!("{list_path}."))
                && !c.path.starts_with(&format!("{list_path}["))
        })
        .map(|c| c.path.clone())
        .collect();
    if !others.is_empty() {
        out.refusals.push(Refusal::PhasedListMixedWithEdits {
            release: d.name.clone(),
            resource: target.to_string(),
            path: rule.path.clone(),
            paths: others,
        });
        return;
    }
    let (before, after) = (live.pointer(&rule.path), patched.pointer(&rule.path));
    let (from, to) = match (
        phased::keys(before, &rule.key),
        phased::keys(after, &rule.key),
    ) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(why), _) => return out.refusals.push(invalid(format!("(live) {why}"))),
        (_, Err(why)) => return out.refusals.push(invalid(format!("(as patched) {why}"))),
    };
    let element = |list: Option<&serde_json::Value>, k: &str| {
        list.and_then(serde_json::Value::as_array)
            .and_then(|a| {
                a.iter()
                    .find(|e| e.get(&rule.key).and_then(serde_json::Value::as_str) == Some(k))
            })
            .cloned()
    };
    for k in from.iter().filter(|k| to.contains(k)) {
        if element(before, k) != element(after, k) {
            return out
                .refusals
                .push(invalid(format!("changes the element {k} in place")));
        }
    }
    let wait = |resources: Vec<ResourceRef>| Step::WaitForHealthy {
        namespace: d.namespace.clone(),
        release: d.name.clone(),
        resources,
        timeout_seconds: d.ready_timeout,
    };
    let phases = phased::phases(&from, &to);
    if phases.is_empty() {
        // Only the order differs: nothing moves, one ordinary patch.
        return rp.steps.push(Step::PatchResource {
            target: target.clone(),
            operations: operations.clone(),
            changes: changes.to_vec(),
        });
    }
    // Each phase's own waits come before its edit, so that a plan made
    // after some phases are done is the rest of the first plan (an
    // interrupted sync resumes its journal).
    if phases[0].change == ListChange::Add {
        rp.steps.push(wait(vec![target.clone()]));
    }
    for ph in phases {
        let stands_for = rule
            .element
            .as_ref()
            .map(|t| t.resolve(target, &ph.element));
        if ph.change == ListChange::Remove {
            // Every element that stays must be current (cStor: each
            // remaining replica Healthy, not only a quorum), so that a
            // resumed sync never removes a replica while the new one is
            // still reconstructing.
            let staying = rule
                .element
                .iter()
                .flat_map(|t| ph.after.iter().map(|k| t.resolve(target, k)));
            rp.steps.push(wait(
                std::iter::once(target.clone())
                    .chain(
                        rule.before_remove
                            .iter()
                            .map(|t| t.resolve(target, &ph.element)),
                    )
                    .chain(staying)
                    .collect(),
            ));
        }
        rp.steps.push(Step::ChangeListElement {
            target: target.clone(),
            path: rule.path.clone(),
            key: rule.key.clone(),
            change: ph.change,
            element: ph.element.clone(),
            after: ph.after,
        });
        match (ph.change, stands_for) {
            (ListChange::Add, Some(e)) => rp.steps.push(wait(vec![target.clone(), e])),
            (ListChange::Remove, Some(e)) => {
                rp.steps.push(Step::WaitForGone {
                    namespace: d.namespace.clone(),
                    release: d.name.clone(),
                    resource: e,
                    timeout_seconds: d.ready_timeout,
                });
                rp.steps.push(wait(vec![target.clone()]));
            }
            (_, None) => rp.steps.push(wait(vec![target.clone()])),
        }
    }
}
