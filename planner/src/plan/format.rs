//! The plan for people (text, Markdown) and for programs (JSON, schema
//! in docs/plan-schema.md).

use super::{Plan, Step, ValueChange};

/// Lines of a multi-line value diffed at most; longer values are
/// summarised (a diff is quadratic at worst).
const MAX_DIFF_LINES: usize = 20_000;

/// Unchanged lines shown around each change of a multi-line value.
const CONTEXT_LINES: usize = 2;

/// `PATH: FROM -> TO`, or for a multi-line string an indented line diff
/// (`-` old, `+` new, two lines of context, `...` between hunks) instead
/// of both values printed whole.
fn change_text(c: &ValueChange, indent: &str, suffix: &str) -> String {
    let multi = |v: &Option<String>| v.as_deref().is_some_and(|t| t.contains('\n'));
    if !multi(&c.from) && !multi(&c.to) {
        return format!("{indent}{}: {}{suffix}\n", c.path, c.transition());
    }
    let (from, to) = (
        c.from.as_deref().unwrap_or(""),
        c.to.as_deref().unwrap_or(""),
    );
    let (a, b) = (from.lines().count(), to.lines().count());
    let count = |v: &Option<String>, n: usize| match (v, n) {
        (None, _) => "(unset)".to_string(),
        (Some(_), 1) => "1 line".to_string(),
        (Some(_), n) => format!("{n} lines"),
    };
    let mut out = format!(
        "{indent}{}: {} -> {}{suffix}\n",
        c.path,
        count(&c.from, a),
        count(&c.to, b),
    );
    if a > MAX_DIFF_LINES || b > MAX_DIFF_LINES {
        out.push_str(&format!("{indent}  (too long to diff)\n"));
        return out;
    }
    let diff = similar::TextDiff::from_lines(from, to);
    for (i, group) in diff.grouped_ops(CONTEXT_LINES).iter().enumerate() {
        if i > 0 {
            out.push_str(&format!("{indent}  ...\n"));
        }
        for op in group {
            for change in diff.iter_changes(op) {
                let sign = match change.tag() {
                    similar::ChangeTag::Delete => '-',
                    similar::ChangeTag::Insert => '+',
                    similar::ChangeTag::Equal => ' ',
                };
                out.push_str(&format!(
                    "{indent}  {sign} {}\n",
                    change.value().trim_end_matches('\n')
                ));
            }
        }
    }
    out
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
            let layer = c
                .layer
                .as_deref()
                .map(|l| format!("  ({l})"))
                .unwrap_or_default();
            out.push_str(&change_text(&c.change, "  ", &layer));
        }
    }
    if !plan.refusals.is_empty() {
        // The steps will not run: not listed.
        out.push_str("Nothing will be applied.\n");
        return out;
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
            if let Step::HelmUpgrade {
                changed_values,
                restores,
                ..
            } = s
            {
                for c in changed_values {
                    out.push_str(&change_text(c, "       ", ""));
                }
                for line in restores
                    .iter()
                    .flat_map(|r| &r.objects)
                    .flat_map(|o| o.lines())
                {
                    out.push_str(&format!("       drift: {line}\n"));
                }
            }
        }
        if !r.objects.is_empty() {
            out.push_str("  objects (against the deployed release's manifest):\n");
            for o in &r.objects {
                out.push_str(&format!("    {}\n", object_line(o)));
                for line in o.diff.lines() {
                    out.push_str(&format!("      {line}\n"));
                }
            }
        }
    }
    if let Some(c) = &plan.capacity {
        out.push_str("\nCapacity:\n");
        for line in c.lines() {
            out.push_str(&format!("  {line}\n"));
        }
    }
    out
}

/// `~ Kind/name (namespace)`: `+` added, `-` removed, `~` changed.
fn object_line(o: &crate::manifest_diff::ObjectChange) -> String {
    use crate::manifest_diff::ObjectChangeKind;
    let sign = match o.change {
        ObjectChangeKind::Added => '+',
        ObjectChangeKind::Removed => '-',
        ObjectChangeKind::Changed => '~',
    };
    format!("{sign} {}/{} ({})", o.kind, o.name, o.namespace)
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
        mermaid(plan, &mut out);
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
        if !plan.refusals.is_empty() {
            // The steps will not run: not listed.
            continue;
        }
        for (i, s) in r.steps.iter().enumerate() {
            out.push_str(&format!(
                "{}. {}{}\n",
                i + 1,
                phase_label(r, i),
                s.describe()
            ));
            if let Step::HelmUpgrade {
                changed_values,
                restores,
                ..
            } = s
            {
                if let Some(r) = restores {
                    out.push_str(&format!(
                        "   <details><summary>{} drifted object(s), restored by this upgrade</summary>\n\n   ```\n",
                        r.objects.len()
                    ));
                    for line in r.objects.iter().flat_map(|o| o.lines()) {
                        out.push_str(&format!("   {line}\n"));
                    }
                    out.push_str("   ```\n   </details>\n");
                }
                if !changed_values.is_empty() {
                    out.push_str(&format!(
                        "   <details><summary>{} value change(s)</summary>\n\n   ```\n",
                        changed_values.len()
                    ));
                    for c in changed_values {
                        out.push_str(&change_text(c, "   ", ""));
                    }
                    out.push_str("   ```\n   </details>\n");
                }
            }
        }
        if !r.objects.is_empty() {
            out.push_str("\nObjects, against the deployed release's manifest:\n\n");
            for o in &r.objects {
                out.push_str(&format!(
                    "<details><summary><code>{}</code></summary>\n\n```diff\n{}```\n</details>\n",
                    object_line(o),
                    o.diff
                ));
            }
        }
    }
    if let Some(c) = plan.capacity.as_ref().filter(|_| plan.refusals.is_empty()) {
        out.push_str("\n### Capacity\n\n");
        for line in c.lines() {
            out.push_str(&format!("- {}\n", line.trim_start()));
        }
    }
    markdown_values_since_base(plan, &mut out);
    out
}

/// The stages and their releases as a Mermaid flowchart (GitHub renders
/// it): one box per stage with its releases and their step counts, in
/// the order they run.
fn mermaid(plan: &Plan, out: &mut String) {
    let mut stages: Vec<(&str, Vec<&super::ReleasePlan>)> = Vec::new();
    for r in &plan.releases {
        match stages.iter_mut().find(|(s, _)| *s == r.stage) {
            Some((_, rs)) => rs.push(r),
            None => stages.push((&r.stage, vec![r])),
        }
    }
    // Labels are quoted; a quote or bracket in a name would end them.
    let label = |s: &str| s.replace(['"', '[', ']', '<', '>'], "_");
    out.push_str("```mermaid\nflowchart LR\n");
    for (i, (stage, releases)) in stages.iter().enumerate() {
        out.push_str(&format!("  subgraph s{i}[\"stage {}\"]\n", label(stage)));
        for (j, r) in releases.iter().enumerate() {
            out.push_str(&format!(
                "    s{i}r{j}[\"{}: {} step(s)\"]\n",
                label(&r.release),
                r.steps.len()
            ));
        }
        out.push_str("  end\n");
    }
    for i in 1..stages.len() {
        out.push_str(&format!("  s{} --> s{i}\n", i - 1));
    }
    out.push_str("```\n\n");
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
