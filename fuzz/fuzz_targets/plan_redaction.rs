//! Arbitrary values (bytes as YAML) with a secret planted in one of the
//! positions the redaction rule covers, planned against a cluster that runs
//! the same values without it (and, in turn, with it changed): the secret
//! must not appear in any plan format nor in the journal made of the plan.
//!
//! The first byte picks the position; the rest is the values document.

#![no_main]

use libfuzzer_sys::fuzz_target;
use plimsoll_planner::journal::Journal;
use plimsoll_planner::plan::{self, PlanOptions};
use plimsoll_planner::state::{DesiredRelease, ObservedState, ReleaseState};
use serde_json::{json, Value};

const SECRET: &str = "Zq7-s3cr3t-Xv9";

/// `values` with the secret planted at a position chosen by `pick`, under a
/// key taken from the document when there is one.
fn plant(values: &Value, pick: u8) -> Value {
    let planted = match pick % 8 {
        0 => json!({"password": SECRET}),
        1 => json!({"auth": {"rootPassword": SECRET}}),
        2 => json!([{"name": "DB_PASSWORD", "value": SECRET}]),
        3 => json!({"url": format!("mongodb://admin:{SECRET}@db:27017/x")}),
        4 => json!({"jaas": format!("ScramLoginModule required username=\"u\" password=\"{SECRET}\";")}),
        5 => json!(format!("[client]\npassword = {SECRET}\nport = 1\n")),
        6 => json!({"tls": {"key": format!("-----BEGIN PRIVATE KEY-----\n{SECRET}\n-----END PRIVATE KEY-----\n")}}),
        _ => json!({"deep": [{"x": {"apiToken": SECRET}}]}),
    };
    let mut v = values.clone();
    match &mut v {
        Value::Object(m) => {
            // Under an existing key when there is one (any depth 1).
            let key = m.keys().next().cloned().unwrap_or_else(|| "planted".into());
            match m.get_mut(&key) {
                Some(Value::Object(inner)) => {
                    inner.insert("planted".into(), planted);
                }
                _ => {
                    m.insert("planted".into(), planted);
                }
            }
        }
        _ => v = json!({"planted": planted, "was": v}),
    }
    v
}

fn release(values: Value) -> DesiredRelease {
    serde_json::from_value(json!({
        "name": "r", "namespace": "ns", "stage": "s", "chart": "c", "version": "1.0.0",
        "values": values, "statefulsets": [], "deployments": []
    }))
    .expect("a desired release")
}

fn observed(values: Value) -> ObservedState {
    let live: ReleaseState = serde_json::from_value(json!({
        "name": "r", "namespace": "ns", "chart": "c", "version": "1.0.0", "revision": 1,
        "status": "deployed", "values": values
    }))
    .expect("a release state");
    ObservedState {
        releases: vec![live],
        ..ObservedState::default()
    }
}

fn check(desired: Value, live: Value) {
    let p = plan::plan(&[release(desired)], &observed(live), &PlanOptions::default());
    let journal = Journal::new(&p, "d", None).to_data();
    let all = format!(
        "{}{}{}{}",
        plan::to_text(&p),
        plan::to_markdown(&p),
        plan::to_json(&p),
        serde_json::to_string(&journal).unwrap_or_default()
    );
    assert!(!all.contains(SECRET), "the secret is shown:\n{all}");
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, doc)) = data.split_first() else {
        return;
    };
    let Ok(docs) = plimsoll_yaml::parse_documents(doc, 0) else {
        return;
    };
    let Some(first) = docs.first() else { return };
    let Ok(text) = plimsoll_yaml::json::to_json(first) else {
        return;
    };
    let Ok(values) = serde_json::from_str::<Value>(&text) else {
        return;
    };
    let planted = plant(&values, pick);
    // Added, removed, and changed (the secret on both sides, altered).
    check(planted.clone(), values.clone());
    check(values, planted.clone());
    let altered: Value =
        serde_json::from_str(&planted.to_string().replace(SECRET, &format!("{SECRET}-old")))
            .unwrap_or(Value::Null);
    check(planted, altered);
});
