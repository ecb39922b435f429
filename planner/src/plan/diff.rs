//! Differences between values trees, as paths, with secrets redacted by
//! [`crate::redact`]'s rule.

use crate::redact::{Redactor, REDACTED};

use super::ValueChange;

/// Differences between two values trees, as paths; secret values are
/// masked (a changed secret shows as changed, never its value).
pub fn values_diff(
    redactor: &Redactor,
    from: &serde_json::Value,
    to: &serde_json::Value,
) -> Vec<ValueChange> {
    let mut out = Vec::new();
    diff_into(redactor, from, to, &mut Vec::new(), false, &mut out);
    out
}

/// Like [`values_diff`], with everything secret (a Kubernetes `Secret`).
pub fn secret_diff(
    redactor: &Redactor,
    from: &serde_json::Value,
    to: &serde_json::Value,
) -> Vec<ValueChange> {
    let mut out = Vec::new();
    diff_into(redactor, from, to, &mut Vec::new(), true, &mut out);
    out
}

fn diff_into(
    r: &Redactor,
    from: &serde_json::Value,
    to: &serde_json::Value,
    path: &mut Vec<String>,
    secret: bool,
    out: &mut Vec<ValueChange>,
) {
    use serde_json::Value;
    let change = |path: &[String], a: Option<&Value>, b: Option<&Value>, s: bool| ValueChange {
        path: path.join("."),
        keys: path.to_vec(),
        from: a.map(|v| r.show(v, s)),
        to: b.map(|v| r.show(v, s)),
    };
    match (from, to) {
        (Value::Object(a), Value::Object(b)) => {
            // `{name: DB_PASSWORD, value: …}`: the value is secret.
            let secret_name = |m: &serde_json::Map<String, Value>| {
                m.get("name")
                    .and_then(Value::as_str)
                    .is_some_and(|n| r.is_secret_key(n))
            };
            let secret_value = secret_name(a) || secret_name(b);
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                path.push(k.clone());
                let s = secret || r.is_secret_key(k) || (secret_value && k == "value");
                match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) => diff_into(r, x, y, path, s, out),
                    (x, y) => out.push(change(path, x, y, s)),
                }
                path.pop();
            }
        }
        (a, b) if a != b => {
            let mut c = change(path, Some(a), Some(b), secret);
            // Both sides masked alike: say that it changed.
            if c.from == c.to {
                c.to = Some(if c.from.as_deref() == Some(REDACTED) {
                    "(redacted, changed)".to_string()
                } else {
                    format!("{} (changed)", c.to.unwrap_or_default())
                });
            }
            out.push(c)
        }
        _ => {}
    }
}
