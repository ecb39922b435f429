//! What changes in a release's objects: the rendered manifests (`helm
//! template`) against the manifest stored with the deployed release, object
//! by object (added, removed, changed), each as a unified diff of YAML, as
//! `helm diff upgrade` shows. Values are masked by the one redaction rule,
//! every value of a `Secret`'s `data` and `stringData` included.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::redact::Redactor;

/// Lines of unchanged context around each change, by default.
pub const DEFAULT_CONTEXT: usize = 3;

/// Objects a manifest may hold for the diff; more are summarised (a
/// rendered chart is untrusted input).
const MAX_OBJECTS: usize = 10_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ObjectChangeKind {
    Added,
    Removed,
    Changed,
}

/// One object whose manifest changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectChange {
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub change: ObjectChangeKind,
    /// The unified diff of the object's YAML, values masked (`-`/`+`/` `
    /// lines, `@@` hunk headers).
    pub diff: String,
}

/// An object's identity: namespace, kind, name, apiVersion.
type ObjectKey = (String, String, String, String);

/// The objects of a manifest, by (namespace, kind, name, apiVersion), as
/// JSON; `Err` when it does not parse.
fn objects(manifest: &str, namespace: &str) -> Result<BTreeMap<ObjectKey, Value>, String> {
    let mut out = BTreeMap::new();
    let docs = plimsoll_yaml::parse_documents(manifest.as_bytes(), 0).map_err(|e| e.to_string())?;
    for doc in docs.iter().take(MAX_OBJECTS) {
        let node = doc.unwrap_document();
        if node.is_null() {
            continue;
        }
        let json = plimsoll_yaml::json::to_json(node).map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_str(&json).map_err(|e| e.to_string())?;
        let s = |p: &str| {
            v.pointer(p)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let ns = match s("/metadata/namespace") {
            n if n.is_empty() => namespace.to_string(),
            n => n,
        };
        // helm-diff's order: namespace, kind, name.
        out.insert((ns, s("/kind"), s("/metadata/name"), s("/apiVersion")), v);
    }
    Ok(out)
}

/// `v` with secrets masked: the redaction rule, and for a `Secret` every
/// value of `data` and `stringData`.
fn masked(r: &Redactor, v: &Value) -> Value {
    let mut m = r.redact_tree(v, false);
    if v.get("kind").and_then(Value::as_str) == Some("Secret") {
        for field in ["data", "stringData"] {
            if let Some(Value::Object(d)) = m.get_mut(field) {
                for x in d.values_mut() {
                    *x = Value::String(crate::redact::REDACTED.to_string());
                }
            }
        }
    }
    m
}

/// A JSON value as block YAML, keys sorted (serde_json's order), strings
/// quoted as JSON when a plain scalar would read differently.
pub fn yaml_text(v: &Value) -> String {
    let mut out = String::new();
    write_yaml(v, 0, &mut out);
    out
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => {
            let plain = !s.is_empty()
                && plimsoll_yaml::resolve::resolve(s) == "!!str"
                && !s.contains([
                    '\n', ':', '#', '\'', '"', '{', '}', '[', ']', ',', '&', '*', '!', '|', '>',
                    '%', '@', '`',
                ])
                && !s.starts_with([' ', '-', '?'])
                && !s.ends_with(' ');
            if plain {
                s.clone()
            } else {
                Value::String(s.clone()).to_string()
            }
        }
        other => other.to_string(),
    }
}

fn write_yaml(v: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, x) in m {
                match x {
                    Value::Object(c) if !c.is_empty() => {
                        out.push_str(&format!("{pad}{}:\n", scalar(&Value::String(k.clone()))));
                        write_yaml(x, indent + 2, out);
                    }
                    Value::Array(a) if !a.is_empty() => {
                        out.push_str(&format!("{pad}{}:\n", scalar(&Value::String(k.clone()))));
                        write_yaml(x, indent, out);
                    }
                    Value::String(s) if s.contains('\n') => {
                        out.push_str(&format!("{pad}{}: |-\n", scalar(&Value::String(k.clone()))));
                        for line in s.lines() {
                            out.push_str(&format!("{pad}  {line}\n"));
                        }
                    }
                    _ => out.push_str(&format!(
                        "{pad}{}: {}\n",
                        scalar(&Value::String(k.clone())),
                        flow(x)
                    )),
                }
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for x in a {
                let mut item = String::new();
                write_yaml(x, indent + 2, &mut item);
                match x {
                    Value::Object(c) if !c.is_empty() => {
                        // `- ` in place of the first line's indentation.
                        let first = item.get(indent + 2..).unwrap_or("");
                        out.push_str(&format!("{pad}- {first}"));
                    }
                    _ => out.push_str(&format!("{pad}- {}", item.trim_start())),
                }
            }
        }
        other => out.push_str(&format!("{pad}{}\n", flow(other))),
    }
}

fn flow(v: &Value) -> String {
    match v {
        Value::Object(m) if m.is_empty() => "{}".into(),
        Value::Array(a) if a.is_empty() => "[]".into(),
        other => scalar(other),
    }
}

fn unified(from: &str, to: &str, context: usize) -> String {
    similar::TextDiff::from_lines(from, to)
        .unified_diff()
        .context_radius(context)
        .to_string()
}

/// The object changes from the deployed manifest to the rendered one.
/// `Err` when either does not parse (the plan says so instead of a diff).
pub fn manifest_changes(
    deployed: &str,
    rendered: &str,
    namespace: &str,
    redactor: &Redactor,
    context: usize,
) -> Result<Vec<ObjectChange>, String> {
    let (old, new) = (objects(deployed, namespace)?, objects(rendered, namespace)?);
    let mut out = Vec::new();
    let keys: std::collections::BTreeSet<&ObjectKey> = old.keys().chain(new.keys()).collect();
    for key in keys {
        let (a, b) = (old.get(key), new.get(key));
        let text = |v: Option<&Value>| {
            v.map(|v| yaml_text(&masked(redactor, v)))
                .unwrap_or_default()
        };
        let (from, to) = (text(a), text(b));
        let change = match (a, b) {
            (None, Some(_)) => ObjectChangeKind::Added,
            (Some(_), None) => ObjectChangeKind::Removed,
            // A change only under masking still changed: say so.
            (Some(x), Some(y)) if x != y => ObjectChangeKind::Changed,
            _ => continue,
        };
        let mut diff = unified(&from, &to, context);
        if diff.is_empty() {
            diff = "(a masked value changed)\n".to_string();
        }
        let (namespace, kind, name, api_version) = key.clone();
        out.push(ObjectChange {
            api_version,
            kind,
            namespace,
            name,
            change,
            diff,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_added_removed_changed_with_secrets_masked() {
        let deployed = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\ndata:\n  mode: slow\n  db.password: old-secret\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\ndata:\n  token: b2xk\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: gone\n";
        let rendered = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\ndata:\n  mode: fast\n  db.password: new-secret\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\ndata:\n  token: bmV3\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: twa\nspec:\n  replicas: 2\n  template:\n    spec:\n      containers:\n        - name: main\n          image: twa:2\n          args: [--fast]\n";
        let c = manifest_changes(deployed, rendered, "tp", &Redactor::default(), 3).unwrap();
        let shown: Vec<(ObjectChangeKind, &str)> =
            c.iter().map(|c| (c.change, c.name.as_str())).collect();
        assert_eq!(
            shown,
            [
                (ObjectChangeKind::Changed, "cfg"),
                (ObjectChangeKind::Added, "twa"),
                (ObjectChangeKind::Changed, "creds"),
                (ObjectChangeKind::Removed, "gone"),
            ]
        );
        let all: String = c.iter().map(|c| c.diff.as_str()).collect();
        for secret in ["old-secret", "new-secret", "b2xk", "bmV3"] {
            assert!(!all.contains(secret), "{secret} shown:\n{all}");
        }
        assert!(
            c[0].diff.contains("-  mode: slow\n+  mode: fast\n"),
            "{}",
            c[0].diff
        );
        assert_eq!(c[2].diff, "(a masked value changed)\n");
        assert!(
            c[1].diff
                .contains("+      - args:\n+        - \"--fast\"\n"),
            "{}",
            c[1].diff
        );
        assert_eq!(c[0].namespace, "tp");
        // Nothing changed: nothing shown.
        assert!(
            manifest_changes(rendered, rendered, "tp", &Redactor::default(), 3)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn yaml_text_reads_back_as_the_same_value() {
        let v = serde_json::json!({"a": {"b": [1, "two", {"c": null, "d": ["x"]}], "e": "yes", "f": "x: y", "g": ""},
            "h": [], "i": {}, "j": "line1\nline2", "k": "-flag", "l": 1.5});
        let text = yaml_text(&v);
        let docs = plimsoll_yaml::parse_documents(text.as_bytes(), 0).unwrap();
        let back: Value =
            serde_json::from_str(&plimsoll_yaml::json::to_json(docs[0].unwrap_document()).unwrap())
                .unwrap();
        assert_eq!(back, v, "{text}");
    }
}
