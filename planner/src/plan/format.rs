//! The plan for people (text, Markdown) and for programs (JSON, schema
//! in docs/plan-schema.md).

use super::{Plan, Step};

/// The plan as text for a terminal.
pub fn to_text(plan: &Plan) -> String {
    let mut out = String::new();
    for r in &plan.refusals {
        out.push_str(&format!("REFUSED: {}\n", r.message()));
    }
    for w in &plan.warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    if let Some(m) = plan.platform.as_ref().and_then(platform_line) {
        out.push_str(&format!("{m}\n"));
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
            out.push_str(&format!(
                "  {}. {}{}\n",
                i + 1,
                phase_label(r, i),
                s.describe()
            ));
            if let Step::HelmUpgrade { changed_values, .. } = s {
                for c in changed_values {
                    out.push_str(&format!("       {}: {}\n", c.path, c.transition()));
                }
            }
        }
    }
    out
}

/// The platform move, when there is one: `Platform release 7.3.6 ->
/// 8.0.2`, `Platform release 8.0.2 (install)`.
fn platform_line(m: &crate::platform::PlatformMove) -> Option<String> {
    match &m.from {
        None => Some(format!("Platform release {} (install)", m.to)),
        Some(f) if *f != m.to => Some(format!(
            "Platform release {f} -> {}{}",
            m.to,
            if m.completing {
                " (completing an interrupted move)"
            } else {
                ""
            }
        )),
        Some(_) => None,
    }
}

/// `phase K of N: ` before the K-th edit of a phased list's move.
fn phase_label(r: &super::ReleasePlan, i: usize) -> String {
    let Step::ChangeListElement { target, path, .. } = &r.steps[i] else {
        return String::new();
    };
    let same: Vec<usize> = r
        .steps
        .iter()
        .enumerate()
        .filter(|(_, s)| matches!(s, Step::ChangeListElement { target: t, path: p, .. } if t == target && p == path))
        .map(|(j, _)| j)
        .collect();
    let k = same.iter().position(|&j| j == i).unwrap_or(0) + 1;
    format!("phase {k} of {}: ", same.len())
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
        let platform = plan
            .platform
            .as_ref()
            .and_then(platform_line)
            .map(|l| format!(" {}.", l.replace(" -> ", " → ")))
            .unwrap_or_default();
        out.push_str(&format!(
            "**Plan:** {steps} step(s) in {} release(s).{platform}\n\n",
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
            out.push_str(&format!(
                "{}. {}{}\n",
                i + 1,
                phase_label(r, i),
                s.describe()
            ));
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
