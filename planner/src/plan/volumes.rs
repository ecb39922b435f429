//! Volumes: every PVC of the StatefulSets a release's chart renders, from
//! its live size to the claim template's. Growth on an expandable class is
//! an expansion followed by a wait; a shrink, a storage-class change and
//! growth on a class that cannot expand are refusals. A StatefulSet whose
//! claim templates change is re-created (orphan delete; the upgrade
//! re-creates it), after the expansions and the patches.

use crate::state::{
    quantity_bytes, ClaimTemplate, DesiredRelease, DesiredStatefulSet, ObservedState, PvcState,
    StatefulSetState,
};

use super::{Plan, PvcRow, Refusal, ReleasePlan, Step};

/// What the volume pass found that later passes need.
pub(super) struct Volumes {
    /// StatefulSets to re-create: (name, uid).
    pub recreate: Vec<(String, String)>,
}

impl Volumes {
    /// The orphan deletes, after the patches.
    pub fn push_recreates(&self, d: &DesiredRelease, rp: &mut ReleasePlan) {
        for (name, uid) in &self.recreate {
            rp.steps.push(Step::RecreateStatefulSet {
                namespace: d.namespace.clone(),
                statefulset: name.clone(),
                uid: uid.clone(),
                reason: "volumeClaimTemplates changed; delete with orphan propagation, the upgrade re-creates it"
                    .to_string(),
            });
        }
    }
}

/// An expansion to plan: (pvc, from, to, class).
type Expansion = (String, String, String, String);

fn templates_equal(a: &[ClaimTemplate], b: &[ClaimTemplate]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.name == y.name
                && x.storage_class == y.storage_class
                && quantity_bytes(&x.size) == quantity_bytes(&y.size)
        })
}

/// The PVCs a claim template gives a StatefulSet: `TEMPLATE-STS-ORDINAL`.
fn claims_of<'a>(
    observed: &'a ObservedState,
    namespace: &str,
    template: &str,
    statefulset: &str,
) -> Vec<&'a PvcState> {
    let prefix = format!("{template}-{statefulset}-");
    let mut claims: Vec<_> = observed
        .pvcs
        .iter()
        .filter(|p| p.namespace == namespace)
        .filter(|p| {
            p.name
                .strip_prefix(&prefix)
                .is_some_and(|ord| !ord.is_empty() && ord.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    claims.sort_by_key(|p| p.name.clone());
    claims
}

/// Fewer replicas of a StatefulSet with claims: with `whenScaled: Delete`
/// the controller deletes the claims of the removed ordinals (refused);
/// otherwise they stay, unused (a warning; refused with `strict`).
fn check_scale_down(
    d: &DesiredRelease,
    dsts: &DesiredStatefulSet,
    live: &StatefulSetState,
    observed: &ObservedState,
    strict: bool,
    out: &mut Plan,
) {
    if dsts.replicas >= live.replicas || dsts.claim_templates.is_empty() {
        return;
    }
    let pvcs: Vec<String> = dsts
        .claim_templates
        .iter()
        .flat_map(|t| claims_of(observed, &d.namespace, &t.name, &dsts.name))
        .filter(|p| {
            p.name
                .rsplit('-')
                .next()
                .and_then(|o| o.parse::<u32>().ok())
                .is_some_and(|ordinal| ordinal >= dsts.replicas)
        })
        .map(|p| p.name.clone())
        .collect();
    let (release, statefulset) = (d.name.clone(), dsts.name.clone());
    let (from, to) = (live.replicas, dsts.replicas);
    if dsts.pvc_retention.deletes_when_scaled() {
        out.refusals.push(Refusal::ScaleDownDeletesClaims {
            release,
            statefulset,
            from,
            to,
            pvcs,
        });
    } else if strict {
        out.refusals.push(Refusal::ScaleDownStrandsClaims {
            release,
            statefulset,
            from,
            to,
            pvcs,
        });
    } else if !pvcs.is_empty() {
        out.warnings.push(format!(
            "{release}: StatefulSet {statefulset} goes from {from} to {to} replicas; PVC(s) {} stay, unused",
            pvcs.join(", ")
        ));
    }
}

/// A live claim template the desired StatefulSet no longer has (renamed
/// or removed) strands its claims: refused, naming them. A rename is
/// recognised as one template gone and one new in its place.
fn check_removed_templates(
    d: &DesiredRelease,
    dsts: &DesiredStatefulSet,
    live: &StatefulSetState,
    observed: &ObservedState,
    out: &mut Plan,
) {
    let has = |list: &[ClaimTemplate], name: &str| list.iter().any(|t| t.name == name);
    let new: Vec<&str> = dsts
        .claim_templates
        .iter()
        .filter(|t| !has(&live.claim_templates, &t.name))
        .map(|t| t.name.as_str())
        .collect();
    let gone: Vec<&ClaimTemplate> = live
        .claim_templates
        .iter()
        .filter(|t| !has(&dsts.claim_templates, &t.name))
        .collect();
    for (i, t) in gone.iter().enumerate() {
        let pvcs = claims_of(observed, &d.namespace, &t.name, &dsts.name)
            .into_iter()
            .map(|p| p.name.clone())
            .collect();
        out.refusals.push(Refusal::ClaimTemplateRemoved {
            release: d.name.clone(),
            statefulset: dsts.name.clone(),
            template: t.name.clone(),
            renamed_to: (gone.len() == new.len()).then(|| new[i].to_string()),
            pvcs,
        });
    }
}

/// Plans expansions and their waits into `rp`, refusals into `out`.
pub(super) fn plan_volumes(
    d: &DesiredRelease,
    observed: &ObservedState,
    strict: bool,
    rp: &mut ReleasePlan,
    out: &mut Plan,
) -> Volumes {
    let mut expansions: Vec<Expansion> = Vec::new();
    let mut resizing: Vec<(String, String)> = Vec::new();
    let mut recreate = Vec::new();
    for dsts in &d.statefulsets {
        for tmpl in &dsts.claim_templates {
            for pvc in claims_of(observed, &d.namespace, &tmpl.name, &dsts.name) {
                check_claim(
                    d,
                    observed,
                    pvc,
                    tmpl,
                    rp,
                    out,
                    &mut expansions,
                    &mut resizing,
                );
            }
        }
        let live_sts = observed
            .statefulsets
            .iter()
            .find(|s| s.name == dsts.name && s.namespace == d.namespace);
        if let Some(l) = live_sts {
            check_scale_down(d, dsts, l, observed, strict, out);
            check_removed_templates(d, dsts, l, observed, out);
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
    Volumes { recreate }
}

/// What a live claim needs to reach the size asked of it.
pub(super) enum ClaimChange {
    /// Refused (a refusal was recorded), or already at the size.
    None,
    /// Grow it: (from, to, class).
    Grow(String, String, String),
    /// Requested already but not grown yet: wait.
    Resizing,
}

/// A live claim against the size and class asked of it (by a claim
/// template or an operator's resource): the review row (`shown` as its
/// name), and a change, or a refusal (shrink, class change, growth on a
/// class that cannot expand).
/// What is asked of a claim, and the name its review row shows.
pub(super) struct Asked<'a> {
    pub shown: String,
    pub size: &'a str,
    pub class: Option<&'a str>,
}

pub(super) fn judge_claim(
    d: &DesiredRelease,
    observed: &ObservedState,
    pvc: &PvcState,
    asked: Asked<'_>,
    rp: &mut ReleasePlan,
    out: &mut Plan,
) -> ClaimChange {
    let Asked {
        shown,
        size,
        class: wanted_class,
    } = asked;
    let class = pvc.storage_class.clone().unwrap_or_default();
    let expandable = observed
        .storage_classes
        .iter()
        .find(|s| s.name == class)
        .is_some_and(|s| s.allow_volume_expansion);
    rp.pvcs.push(PvcRow {
        pvc: shown,
        current: pvc.request.clone(),
        desired: size.to_string(),
        storage_class: class.clone(),
        expandable,
    });
    if let Some(want) = wanted_class {
        if want != class {
            out.refusals.push(Refusal::StorageClassChange {
                release: d.name.clone(),
                pvc: pvc.name.clone(),
                from: class,
                to: want.to_string(),
            });
            return ClaimChange::None;
        }
    }
    let (have, want) = (quantity_bytes(&pvc.request), quantity_bytes(size));
    if want < have {
        out.refusals.push(Refusal::PvcShrink {
            release: d.name.clone(),
            pvc: pvc.name.clone(),
            from: pvc.request.clone(),
            to: size.to_string(),
        });
        ClaimChange::None
    } else if want > have {
        if expandable {
            ClaimChange::Grow(pvc.request.clone(), size.to_string(), class)
        } else {
            out.refusals.push(Refusal::NotExpandable {
                release: d.name.clone(),
                pvc: pvc.name.clone(),
                storage_class: class,
                from: pvc.request.clone(),
                to: size.to_string(),
            });
            ClaimChange::None
        }
    } else if pvc
        .capacity
        .as_deref()
        .and_then(quantity_bytes)
        .is_some_and(|c| Some(c) < have)
    {
        ClaimChange::Resizing
    } else {
        ClaimChange::None
    }
}

/// One live claim against its template: an expansion, a wait for one in
/// progress (requested already, by an interrupted sync or by hand, but not
/// yet grown: wait before anything re-creates the StatefulSet), or a
/// refusal.
#[allow(clippy::too_many_arguments)]
fn check_claim(
    d: &DesiredRelease,
    observed: &ObservedState,
    pvc: &PvcState,
    tmpl: &ClaimTemplate,
    rp: &mut ReleasePlan,
    out: &mut Plan,
    expansions: &mut Vec<Expansion>,
    resizing: &mut Vec<(String, String)>,
) {
    let asked = Asked {
        shown: pvc.name.clone(),
        size: &tmpl.size,
        class: tmpl.storage_class.as_deref(),
    };
    match judge_claim(d, observed, pvc, asked, rp, out) {
        ClaimChange::None => {}
        ClaimChange::Grow(from, to, class) => expansions.push((pvc.name.clone(), from, to, class)),
        ClaimChange::Resizing => resizing.push((pvc.name.clone(), pvc.request.clone())),
    }
}
