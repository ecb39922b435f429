//! Drift: the live state compared with the last synced commit's desired
//! state, as the planner sees it (values, chart versions, PVC sizes,
//! declared patches, and the live objects against the deployed manifest:
//! a hand-edited image or replica count). Reported as a log line, the `plimsoll_drift` gauge
//! and a Warning Event on the release's first workload.

use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, PostParams};
use plimsoll_planner::plan::Plan;
use plimsoll_planner::state::DesiredRelease;

use plimsoll_syncer::desired::DesiredState;

use crate::metrics::Metrics;

/// Reports drift found by `plan` (planned against the synced commit);
/// returns what drifted, by release (what can be synced back, and what
/// cannot), each line scrubbed of secrets.
pub async fn report(
    client: &kube::Client,
    metrics: &Metrics,
    desired: &DesiredState,
    commit: &str,
    plan: &Plan,
) -> std::collections::BTreeMap<String, Vec<String>> {
    let stack = desired.stack_name.as_str();
    for r in &desired.releases {
        let steps = plan
            .releases
            .iter()
            .find(|x| x.release == r.name)
            .map_or(0, |x| x.steps.len() as u64);
        // Drift that cannot be synced back (a PVC grown by hand past the
        // desired size) counts too.
        let refused = plan
            .refusals
            .iter()
            .filter(|x| x.release() == r.name)
            .count() as u64;
        metrics.drift(stack, &r.name, steps + refused);
    }
    let mut drifted = std::collections::BTreeMap::new();
    for rp in plan.releases.iter().filter(|r| !r.steps.is_empty()) {
        let mut what: Vec<String> = rp.steps.iter().map(|s| s.describe()).collect();
        // What drifted in the live objects, field by field.
        for s in &rp.steps {
            if let plimsoll_planner::plan::Step::HelmUpgrade {
                restores: Some(r), ..
            } = s
            {
                what.extend(r.objects.iter().flat_map(|o| o.lines()));
            }
        }
        let message = desired.scrubber.scrub(&format!(
            "{} drifted from {}: {}",
            rp.release,
            &commit[..12.min(commit.len())],
            what.join("; ")
        ));
        tracing::warn!(release = %rp.release, "{message}");
        if let Some(r) = desired.releases.iter().find(|r| r.name == rp.release) {
            event(client, r, &message).await;
        }
        drifted.insert(
            rp.release.clone(),
            what.iter().map(|w| desired.scrubber.scrub(w)).collect(),
        );
    }
    for r in &plan.refusals {
        let message = desired.scrubber.scrub(&r.message());
        tracing::warn!("drift that cannot be synced back: {message}");
        drifted
            .entry(r.release().to_string())
            .or_insert_with(Vec::new)
            .push(format!("cannot be synced back: {message}"));
    }
    drifted
}

/// Creates a Warning Event on the release's first workload.
async fn event(client: &kube::Client, release: &DesiredRelease, message: &str) {
    let namespace = &release.namespace;
    let (kind, name) = match (release.statefulsets.first(), release.deployments.first()) {
        (Some(s), _) => ("StatefulSet", s.name.clone()),
        (None, Some(d)) => ("Deployment", d.clone()),
        _ => return,
    };
    let uid = match kind {
        "StatefulSet" => {
            Api::<k8s_openapi::api::apps::v1::StatefulSet>::namespaced(client.clone(), namespace)
                .get_opt(&name)
                .await
                .ok()
                .flatten()
                .and_then(|o| o.metadata.uid)
        }
        _ => Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(client.clone(), namespace)
            .get_opt(&name)
            .await
            .ok()
            .flatten()
            .and_then(|o| o.metadata.uid),
    };
    let involved = serde_json::json!({"apiVersion": "apps/v1", "kind": kind, "namespace": namespace, "name": name, "uid": uid});
    if let Err(e) = warning_event(
        client,
        namespace,
        &format!("{name}.plimsoll-drift-"),
        involved,
        "Drift",
        message,
    )
    .await
    {
        tracing::warn!(release = %release.name, "cannot record the drift event: {e}");
    }
}

/// Creates a Warning Event from Plimsoll about `involved`.
async fn warning_event(
    client: &kube::Client,
    namespace: &str,
    generate_name: &str,
    involved: serde_json::Value,
    reason: &str,
    message: &str,
) -> Result<(), kube::Error> {
    let now = k8s_openapi::jiff::Timestamp::now();
    let event: Event = match serde_json::from_value(serde_json::json!({
        "metadata": {"generateName": generate_name, "namespace": namespace},
        "involvedObject": involved,
        "type": "Warning", "reason": reason, "message": message,
        "source": {"component": "plimsoll"},
        "firstTimestamp": now.to_string(), "lastTimestamp": now.to_string(), "count": 1,
    })) {
        Ok(e) => e,
        Err(_) => return Ok(()),
    };
    Api::<Event>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &event)
        .await
        .map(drop)
}

/// A Warning Event about a commit that cannot be used, on the journal
/// namespace (there is no release object to attach it to). The API server
/// requires an Event's namespace to be its object's, so the Namespace is
/// named with its own name as namespace (`kubectl get events -n NS`).
pub async fn commit_event(client: &kube::Client, namespace: &str, commit: &str, message: &str) {
    let short = &commit[..12.min(commit.len())];
    let involved = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "name": namespace, "namespace": namespace});
    let message = format!("commit {short} cannot be used: {}", truncate(message, 900));
    if let Err(e) = warning_event(
        client,
        namespace,
        "plimsoll-commit-",
        involved,
        "CommitRejected",
        &message,
    )
    .await
    {
        tracing::warn!("cannot record the rejected commit as an Event: {e}");
    }
}

/// At most `max` bytes of `s`, cut at a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
