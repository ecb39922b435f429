//! Differences between values trees, as paths, with secrets redacted.

use super::ValueChange;

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
