//! Drift of live objects: the fields a release's deployed manifest sets
//! (the manifest Helm stored with the release), compared with the live
//! objects, as helm-diff's three-way mode does. Only fields the chart sets
//! are compared, so defaults the API server fills in are never drift; a
//! hand-edited image or replica count, or a deleted object, is.
//!
//! Kinds compared: [`KINDS`]. Values are compared as the API server keeps
//! them: numbers and their strings alike, quantities by amount (`0.5` and
//! `500m`), list items by `name` where every item has one (a sidecar an
//! admission webhook injects is not drift), otherwise by position.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::redact::Redactor;

/// The kinds whose live objects are compared (`apiVersion`, `kind`).
pub const KINDS: &[(&str, &str)] = &[
    ("apps/v1", "Deployment"),
    ("apps/v1", "StatefulSet"),
    ("apps/v1", "DaemonSet"),
    ("v1", "Service"),
    ("v1", "ConfigMap"),
];

/// Fields reported per object at most (the count says the rest).
const MAX_FIELDS: usize = 20;
/// Objects of a manifest looked at, at most (untrusted input).
const MAX_OBJECTS: usize = 10_000;

/// A live object of a kind in [`KINDS`], without `status` and
/// server-managed metadata.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LiveObject {
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub object: Value,
}

/// A field whose live value is not the one the deployed chart set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldDrift {
    /// `spec.template.spec.containers[main].image`: list items by name
    /// where they have one.
    pub path: String,
    /// The deployed chart's value (masked where secret).
    pub chart: String,
    /// The live value, `None` when the field is gone.
    pub live: Option<String>,
}

/// An object of the deployed release that drifted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectDrift {
    pub kind: String,
    pub name: String,
    /// The object no longer exists.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub missing: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldDrift>,
    /// Fields drifted beyond those listed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub more: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl ObjectDrift {
    /// `deployment/twa`.
    pub fn object(&self) -> String {
        format!("{}/{}", self.kind.to_ascii_lowercase(), self.name)
    }

    /// One line per field, for plans and drift reports.
    pub fn lines(&self) -> Vec<String> {
        if self.missing {
            return vec![format!("{}: deleted (the chart creates it)", self.object())];
        }
        let mut out: Vec<String> = self
            .fields
            .iter()
            .map(|f| {
                format!(
                    "{} {}: live {}, chart {}",
                    self.object(),
                    f.path,
                    f.live.as_deref().unwrap_or("(unset)"),
                    f.chart
                )
            })
            .collect();
        if self.more > 0 {
            out.push(format!("{}: {} more field(s)", self.object(), self.more));
        }
        out
    }
}

/// The objects of kinds in [`KINDS`] a manifest holds: (apiVersion, kind,
/// namespace, name, object). Documents that do not parse are skipped (the
/// manifest diff reports them).
pub fn manifest_objects(
    manifest: &str,
    namespace: &str,
) -> Vec<(String, String, String, String, Value)> {
    let Ok(docs) = plimsoll_yaml::parse_documents(manifest.as_bytes(), 0) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for doc in docs.iter().take(MAX_OBJECTS) {
        let node = doc.unwrap_document();
        if node.is_null() {
            continue;
        }
        let Some(v) = plimsoll_yaml::json::to_json(node)
            .ok()
            .and_then(|j| serde_json::from_str::<Value>(&j).ok())
        else {
            continue;
        };
        let s = |p: &str| {
            v.pointer(p)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let (api_version, kind) = (s("/apiVersion"), s("/kind"));
        if !KINDS.iter().any(|(a, k)| *a == api_version && *k == kind) {
            continue;
        }
        let ns = match s("/metadata/namespace") {
            n if n.is_empty() => namespace.to_string(),
            n => n,
        };
        let name = s("/metadata/name");
        out.push((api_version, kind, ns, name, v));
    }
    // By name, not by the helm's document order.
    out.sort_by(|a, b| (&a.1, &a.2, &a.3, &a.0).cmp(&(&b.1, &b.2, &b.3, &b.0)));
    out
}

/// The drift of a release's live objects from its deployed manifest.
pub fn release_drift(
    manifest: &str,
    namespace: &str,
    live: &[LiveObject],
    redactor: &Redactor,
) -> Vec<ObjectDrift> {
    let mut out = Vec::new();
    for (api_version, kind, ns, name, chart) in manifest_objects(manifest, namespace) {
        // Only the release's namespace is read.
        if ns != namespace {
            continue;
        }
        let found = live.iter().find(|l| {
            l.api_version == api_version && l.kind == kind && l.namespace == ns && l.name == name
        });
        let Some(found) = found else {
            out.push(ObjectDrift {
                kind,
                name,
                missing: true,
                fields: Vec::new(),
                more: 0,
            });
            continue;
        };
        let secret_object = kind == "Secret";
        let masked_chart = redactor.redact_tree(&chart, secret_object);
        let masked_live = redactor.redact_tree(&found.object, secret_object);
        let mut fields = Vec::new();
        let mut path = String::new();
        for key in ["metadata", "spec", "data", "binaryData"] {
            let (Some(c), l) = (chart.get(key), found.object.get(key)) else {
                continue;
            };
            path.clear();
            path.push_str(key);
            // Of metadata, only what a person edits by hand and the chart
            // sets: labels and annotations.
            if key == "metadata" {
                for sub in ["labels", "annotations"] {
                    if let Some(cs) = c.get(sub) {
                        let p = format!("metadata.{sub}");
                        compare(
                            &p,
                            cs,
                            l.and_then(|l| l.get(sub)),
                            masked_chart.pointer(&format!("/metadata/{sub}")),
                            masked_live.pointer(&format!("/metadata/{sub}")),
                            &mut fields,
                        );
                    }
                }
                continue;
            }
            compare(
                &path,
                c,
                l,
                masked_chart.get(key),
                masked_live.get(key),
                &mut fields,
            );
        }
        if !fields.is_empty() {
            let more = fields.len().saturating_sub(MAX_FIELDS);
            fields.truncate(MAX_FIELDS);
            out.push(ObjectDrift {
                kind,
                name,
                missing: false,
                fields,
                more,
            });
        }
    }
    out
}

/// Compares what the chart set at `path` (and below) with the live value;
/// the masked trees give what is shown.
fn compare(
    path: &str,
    chart: &Value,
    live: Option<&Value>,
    masked_chart: Option<&Value>,
    masked_live: Option<&Value>,
    out: &mut Vec<FieldDrift>,
) {
    match chart {
        // Null or empty: the chart sets nothing here that could drift
        // (the API server fills in or drops it).
        Value::Null => {}
        Value::Object(m) if m.is_empty() => {}
        Value::Array(a) if a.is_empty() => {}
        Value::Object(m) => {
            let live_map = live.and_then(Value::as_object);
            for (k, v) in m {
                compare(
                    &format!("{path}.{k}"),
                    v,
                    live_map.and_then(|l| l.get(k)),
                    masked_chart.and_then(|x| x.get(k)),
                    masked_live.and_then(|x| x.get(k)),
                    out,
                );
            }
        }
        Value::Array(items) => {
            let live_items = live.and_then(Value::as_array);
            let named = items
                .iter()
                .all(|i| i.get("name").and_then(Value::as_str).is_some());
            for (i, item) in items.iter().enumerate() {
                let (label, at) = if named {
                    let name = item["name"].as_str().unwrap_or_default();
                    let at = live_items.and_then(|l| {
                        l.iter()
                            .position(|x| x.get("name").and_then(Value::as_str) == Some(name))
                    });
                    (name.to_string(), at)
                } else {
                    (i.to_string(), live_items.filter(|l| i < l.len()).map(|_| i))
                };
                compare(
                    &format!("{path}[{label}]"),
                    item,
                    at.and_then(|j| live_items.and_then(|l| l.get(j))),
                    item_at(masked_chart, Some(i)),
                    item_at(masked_live, at),
                    out,
                );
            }
        }
        scalar => {
            if live.is_some_and(|l| same_scalar(scalar, l)) {
                return;
            }
            let show = |v: Option<&Value>| {
                v.map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
            };
            out.push(FieldDrift {
                path: path.to_string(),
                chart: show(masked_chart).unwrap_or_else(|| show(Some(scalar)).unwrap_or_default()),
                live: live.and(show(masked_live)),
            });
        }
    }
}

fn item_at(list: Option<&Value>, index: Option<usize>) -> Option<&Value> {
    list.and_then(Value::as_array)
        .and_then(|a| index.and_then(|j| a.get(j)))
}

/// Scalars equal as the API server keeps them: `80` and `"80"`, `0.5` and
/// `500m`, `1Gi` and `1024Mi`.
fn same_scalar(chart: &Value, live: &Value) -> bool {
    if chart == live {
        return true;
    }
    let text = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    let (Some(a), Some(b)) = (text(chart), text(live)) else {
        return false;
    };
    if a == b {
        return true;
    }
    match (quantity(&a), quantity(&b)) {
        (Some(x), Some(y)) => (x - y).abs() <= f64::EPSILON * x.abs().max(1.0),
        _ => false,
    }
}

/// A Kubernetes quantity's amount (`500m`, `1.5Gi`, `2`, `1e3`).
fn quantity(s: &str) -> Option<f64> {
    let split = s
        .find(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E')
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        _ => return None,
    };
    n.is_finite().then_some(n * mult)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const MANIFEST: &str = "---\n# Source: app/templates/twa.yaml\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: twa\n  labels: {app: twa}\nspec:\n  replicas: 1\n  template:\n    metadata:\n      creationTimestamp: null\n    spec:\n      containers:\n        - name: main\n          image: twa:1.0.0\n          env:\n            - {name: DB_PASSWORD, value: hunter2}\n          resources: {limits: {cpu: 0.5, memory: 1Gi}}\n          ports: [{containerPort: 8080}]\n---\napiVersion: v1\nkind: Service\nmetadata: {name: twa}\nspec:\n  ports: [{port: 80, targetPort: 8080}]\n";

    fn live(replicas: u32, image: &str, password: &str) -> Vec<LiveObject> {
        vec![LiveObject {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            namespace: "ns".into(),
            name: "twa".into(),
            object: json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "twa", "labels": {"app": "twa", "extra": "x"}, "annotations": {"deployment.kubernetes.io/revision": "2"}},
                "spec": {"replicas": replicas, "progressDeadlineSeconds": 600, "template": {"metadata": {}, "spec": {"containers": [
                    {"name": "istio-proxy", "image": "proxy"},
                    {"name": "main", "image": image, "imagePullPolicy": "IfNotPresent",
                     "env": [{"name": "DB_PASSWORD", "value": password}],
                     "resources": {"limits": {"cpu": "500m", "memory": "1024Mi"}},
                     "ports": [{"containerPort": 8080, "protocol": "TCP"}]}]}}}
            }),
        }]
    }

    #[test]
    fn fields_the_chart_sets_are_compared_as_the_api_server_keeps_them() {
        let r = Redactor::with_patterns::<_, &str>([]);
        // Defaults, normalised quantities, an injected sidecar, extra
        // labels: no drift. The Service is gone: drift.
        let d = release_drift(MANIFEST, "ns", &live(1, "twa:1.0.0", "hunter2"), &r);
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(d[0].missing && d[0].object() == "service/twa");

        let d = release_drift(MANIFEST, "ns", &live(3, "evil:6.6.6", "changed"), &r);
        let lines: Vec<String> = d.iter().flat_map(ObjectDrift::lines).collect();
        assert_eq!(
            lines,
            [
                "deployment/twa spec.replicas: live 3, chart 1",
                "deployment/twa spec.template.spec.containers[main].env[DB_PASSWORD].value: live (redacted), chart (redacted)",
                "deployment/twa spec.template.spec.containers[main].image: live evil:6.6.6, chart twa:1.0.0",
                "service/twa: deleted (the chart creates it)",
            ]
        );
        assert!(!format!("{d:?}").contains("hunter2") && !format!("{d:?}").contains("changed"));
    }

    #[test]
    fn quantities_and_numbers() {
        assert!(same_scalar(&json!(0.5), &json!("500m")));
        assert!(same_scalar(&json!("1Gi"), &json!("1024Mi")));
        assert!(same_scalar(&json!(80), &json!("80")));
        assert!(!same_scalar(&json!("1Gi"), &json!("1G")));
        assert!(!same_scalar(&json!(true), &json!("false")));
        assert!(!same_scalar(&json!("a"), &json!(null)));
    }
}
