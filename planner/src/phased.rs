//! Phased lists: list fields of operator resources whose edits must grow
//! before they shrink, one element per edit, with a health wait between
//! (seed 002: a cStor volume's replicas move from one pool to another by
//! adding the new pool, waiting until its replica is Healthy, and only
//! then, while the volume is Healthy, removing the old one).
//!
//! A rule names the list (a JSON pointer), the element field that names an
//! element, the resource each element stands for (waited on: current after
//! it is added, gone after it is removed) and the resources that must be
//! current before an element is removed. Built in for cStor's
//! `CStorVolumeConfig` (`spec.policy.replicaPoolInfo`, by `poolName`; a
//! `CStorVolumeReplica` `<volume>-<pool>` per element; the `CStorVolume`
//! Healthy before a removal, as cStor's migration guide requires); the
//! stack file's `phasedLists:` adds or replaces rules.

use serde::{Deserialize, Serialize};

use crate::state::ResourceRef;

/// A resource named from the listed resource and one element: `{name}`
/// (the listed resource's name) and `{key}` (the element's key value) are
/// substituted; its namespace is the listed resource's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceTemplate {
    pub api_version: String,
    pub kind: String,
    pub name: String,
}

impl ResourceTemplate {
    pub fn resolve(&self, listed: &ResourceRef, key: &str) -> ResourceRef {
        ResourceRef {
            api_version: self.api_version.clone(),
            kind: self.kind.clone(),
            namespace: listed.namespace.clone(),
            name: self
                .name
                .replace("{name}", &listed.name)
                .replace("{key}", key),
        }
    }
}

/// One phased list rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhasedList {
    /// The API group of the listed kind (`cstor.openebs.io`).
    pub group: String,
    pub kind: String,
    /// JSON pointer of the list (`/spec/policy/replicaPoolInfo`).
    pub path: String,
    /// The element field that names an element (`poolName`).
    pub key: String,
    /// What each element stands for: current after its add, gone after
    /// its removal.
    pub element: Option<ResourceTemplate>,
    /// Current before any element is removed.
    pub before_remove: Vec<ResourceTemplate>,
}

/// The rules in force: built-ins, then the stack file's (a stack rule for
/// the same group, kind and path replaces the built-in one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PhasedLists {
    pub rules: Vec<PhasedList>,
}

impl Default for PhasedLists {
    fn default() -> Self {
        PhasedLists {
            rules: vec![cstor_replicas()],
        }
    }
}

/// cStor: `CStorVolumeConfig.spec.policy.replicaPoolInfo[].poolName`
/// (openebs cstor-operators docs/volume/migration.md; the CVC webhook
/// refuses more than one replica change per edit).
fn cstor_replicas() -> PhasedList {
    PhasedList {
        group: "cstor.openebs.io".into(),
        kind: "CStorVolumeConfig".into(),
        path: "/spec/policy/replicaPoolInfo".into(),
        key: "poolName".into(),
        element: Some(ResourceTemplate {
            api_version: "cstor.openebs.io/v1".into(),
            kind: "CStorVolumeReplica".into(),
            name: "{name}-{key}".into(),
        }),
        before_remove: vec![ResourceTemplate {
            api_version: "cstor.openebs.io/v1".into(),
            kind: "CStorVolume".into(),
            name: "{name}".into(),
        }],
    }
}

impl PhasedLists {
    /// Built-ins with `declared` added; a declared rule replaces a built-in
    /// one for the same group, kind and path.
    pub fn with(declared: Vec<PhasedList>) -> PhasedLists {
        let mut rules: Vec<PhasedList> = PhasedLists::default()
            .rules
            .into_iter()
            .filter(|b| {
                !declared
                    .iter()
                    .any(|d| d.group == b.group && d.kind == b.kind && d.path == b.path)
            })
            .collect();
        rules.extend(declared);
        PhasedLists { rules }
    }

    /// The rules for a resource's kind.
    pub fn for_target<'a>(
        &'a self,
        target: &'a ResourceRef,
    ) -> impl Iterator<Item = &'a PhasedList> {
        let group = target.api_version.split('/').next().unwrap_or("");
        self.rules
            .iter()
            .filter(move |r| r.group == group && r.kind == target.kind)
    }
}

/// Add or remove one element.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ListChange {
    Add,
    Remove,
}

/// One phase of a move: one element added or removed, and the list's keys
/// after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Phase {
    pub change: ListChange,
    pub element: String,
    pub after: Vec<String>,
}

/// The phases from the `live` keys to the `desired` ones, one element
/// each: an element is removed while the list is longer than desired (or
/// nothing is left to add), otherwise one is added. So the list never has
/// fewer elements than the smaller of its start and its end, a removal
/// follows each add when the length stays, adds go in the desired order
/// and removals in the live order. The choice depends only on the list
/// now, so the phases planned after some are done are the rest of the
/// first plan's.
pub fn phases(live: &[String], desired: &[String]) -> Vec<Phase> {
    let mut now: Vec<String> = live.to_vec();
    let mut out = Vec::new();
    loop {
        let add = desired.iter().find(|k| !now.contains(k)).cloned();
        let remove = now.iter().find(|k| !desired.contains(k)).cloned();
        let (change, element) = match (add, remove) {
            (_, Some(r)) if now.len() > desired.len() => (ListChange::Remove, r),
            (Some(a), _) => (ListChange::Add, a),
            (None, Some(r)) => (ListChange::Remove, r),
            (None, None) => break,
        };
        match change {
            ListChange::Add => now.push(element.clone()),
            ListChange::Remove => now.retain(|k| *k != element),
        }
        out.push(Phase {
            change,
            element,
            after: now.clone(),
        });
    }
    // The last phase leaves the list as desired, order included.
    if let Some(last) = out.last_mut() {
        last.after = desired.to_vec();
    }
    out
}

/// Elements a phased list may have: planning is quadratic in it, and a
/// list from a repository is untrusted.
pub const MAX_ELEMENTS: usize = 256;

/// The keys of a list's elements; `Err` says why the list cannot be moved
/// element by element (not a list, over [`MAX_ELEMENTS`], an element
/// without the key, a repeated key).
pub fn keys(list: Option<&serde_json::Value>, key: &str) -> Result<Vec<String>, String> {
    let Some(list) = list else {
        return Ok(Vec::new());
    };
    let items = list.as_array().ok_or_else(|| "is not a list".to_string())?;
    if items.len() > MAX_ELEMENTS {
        return Err(format!(
            "has {} elements, more than {MAX_ELEMENTS}",
            items.len()
        ));
    }
    let mut out: Vec<String> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let k = item
            .get(key)
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| format!("element {i} has no string `{key}`"))?;
        if out.iter().any(|x| x == k) {
            return Err(format!("`{key}` {k:?} appears twice"));
        }
        out.push(k.to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn one_element_per_phase_grow_before_shrink() {
        let p = phases(&v(&["A", "B"]), &v(&["A", "C"]));
        assert_eq!(
            p,
            vec![
                Phase {
                    change: ListChange::Add,
                    element: "C".into(),
                    after: v(&["A", "B", "C"])
                },
                Phase {
                    change: ListChange::Remove,
                    element: "B".into(),
                    after: v(&["A", "C"])
                },
            ]
        );
        let p = phases(&v(&["A", "B"]), &v(&["C", "D"]));
        let shown: Vec<(ListChange, &str, usize)> = p
            .iter()
            .map(|p| (p.change, p.element.as_str(), p.after.len()))
            .collect();
        assert_eq!(
            shown,
            vec![
                (ListChange::Add, "C", 3),
                (ListChange::Remove, "A", 2),
                (ListChange::Add, "D", 3),
                (ListChange::Remove, "B", 2),
            ]
        );
        assert_eq!(p.last().unwrap().after, v(&["C", "D"]));
        // Growth only, shrink only, and nothing to do.
        assert_eq!(phases(&v(&["A"]), &v(&["A", "B", "C"])).len(), 2);
        assert_eq!(phases(&v(&["A", "B", "C"]), &v(&["B"])).len(), 2);
        // Fewer in the end: never below the end's length.
        let p = phases(&v(&["A", "B", "C"]), &v(&["D"]));
        assert!(p.iter().all(|p| !p.after.is_empty()), "{p:?}");
        assert_eq!(p.last().unwrap().after, v(&["D"]));
        assert!(phases(&v(&["A", "B"]), &v(&["A", "B"])).is_empty());
        // Every phase differs from the one before by one element.
        for w in p.windows(2) {
            let (a, b) = (&w[0].after, &w[1].after);
            let diff = a.iter().filter(|k| !b.contains(k)).count()
                + b.iter().filter(|k| !a.contains(k)).count();
            assert_eq!(diff, 1, "{a:?} -> {b:?}");
        }
    }

    #[test]
    fn keys_must_name_each_element_once() {
        let list = serde_json::json!([{"poolName": "A"}, {"poolName": "B"}]);
        assert_eq!(keys(Some(&list), "poolName").unwrap(), v(&["A", "B"]));
        let twice = serde_json::json!([{"poolName": "A"}, {"poolName": "A"}]);
        assert!(keys(Some(&twice), "poolName")
            .unwrap_err()
            .contains("twice"));
        let nameless = serde_json::json!([{"pool": "A"}]);
        assert!(keys(Some(&nameless), "poolName").is_err());
        assert!(keys(Some(&serde_json::json!({})), "poolName").is_err());
        assert!(keys(None, "poolName").unwrap().is_empty());
        let huge: Vec<serde_json::Value> = (0..100_000)
            .map(|i| serde_json::json!({"poolName": format!("p{i}")}))
            .collect();
        let huge = serde_json::Value::Array(huge);
        assert!(keys(Some(&huge), "poolName")
            .unwrap_err()
            .contains("more than 256"));
    }

    #[test]
    fn templates_and_declared_rules() {
        let cvc = ResourceRef {
            api_version: "cstor.openebs.io/v1".into(),
            kind: "CStorVolumeConfig".into(),
            namespace: "openebs".into(),
            name: "pvc-1".into(),
        };
        let rules = PhasedLists::default();
        let rule = rules.for_target(&cvc).next().unwrap();
        let cvr = rule.element.as_ref().unwrap().resolve(&cvc, "pool-b");
        assert_eq!(cvr.name, "pvc-1-pool-b");
        assert_eq!(cvr.namespace, "openebs");
        let mut mine = cstor_replicas();
        mine.key = "name".into();
        let replaced = PhasedLists::with(vec![mine]);
        assert_eq!(replaced.rules.len(), 1);
        assert_eq!(replaced.for_target(&cvc).next().unwrap().key, "name");
    }
}
