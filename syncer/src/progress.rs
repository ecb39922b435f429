//! What a running sync is doing now, for whoever shows it (the daemon's
//! status page): step n of m, the steps running (one per release of a
//! stage, side by side), and what each waits on with the condition now.
//!
//! The executor records into a [`RunTracker`] as it goes; readers take a
//! [`RunState`] snapshot. Every text here has been scrubbed of the desired
//! state's secrets by the executor before it is recorded.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

/// A step being performed now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningStep {
    /// The step's position among all steps of the plan (1-based).
    pub n: usize,
    /// The journal's step id.
    pub id: String,
    /// The step as the plan describes it.
    pub step: String,
    /// What the step waits on and the condition now, while it waits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
    /// When the step started (seconds since the Unix epoch).
    pub since: u64,
}

/// A snapshot of a run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunState {
    /// Steps of the plan in all (done before this run included).
    pub total: usize,
    /// Steps completed (done before this run included).
    pub done: usize,
    /// The steps running now, by release.
    pub running: BTreeMap<String, RunningStep>,
}

/// Shared between the executor (writer) and readers.
#[derive(Clone, Debug, Default)]
pub struct RunTracker(Arc<Mutex<RunState>>);

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl RunTracker {
    fn update(&self, f: impl FnOnce(&mut RunState)) {
        if let Ok(mut s) = self.0.lock() {
            f(&mut s);
        }
    }

    /// A run starts with `done` of `total` steps completed already.
    pub fn begin(&self, done: usize, total: usize) {
        self.update(|s| {
            *s = RunState {
                total,
                done,
                running: BTreeMap::new(),
            }
        });
    }

    pub fn step_started(&self, release: &str, n: usize, id: &str, step: &str) {
        self.update(|s| {
            s.running.insert(
                release.to_string(),
                RunningStep {
                    n,
                    id: id.to_string(),
                    step: step.to_string(),
                    waiting: None,
                    since: now(),
                },
            );
        });
    }

    /// The release's step now waits on `what` (the condition now).
    pub fn waiting(&self, release: &str, what: &str) {
        self.update(|s| {
            if let Some(r) = s.running.get_mut(release) {
                r.waiting = Some(what.to_string());
            }
        });
    }

    /// The release's step ended; `completed` when it counts as done.
    pub fn step_ended(&self, release: &str, completed: bool) {
        self.update(|s| {
            s.running.remove(release);
            if completed {
                s.done += 1;
            }
        });
    }

    /// The run ended (however it ended).
    pub fn end(&self) {
        self.update(|s| s.running.clear());
    }

    pub fn snapshot(&self) -> RunState {
        self.0.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_counts_steps_and_keeps_what_each_release_waits_on() {
        let t = RunTracker::default();
        t.begin(2, 6);
        t.step_started(
            "data",
            3,
            "data/wait-1",
            "wait for PVC data-0 to reach 15Gi",
        );
        t.step_started("app", 4, "app/upgrade", "helm upgrade app");
        t.waiting("data", "PVC data-0: capacity 10Gi, waiting for 15Gi");
        t.waiting("nobody", "ignored: no step of this release runs");
        let s = t.snapshot();
        assert_eq!((s.done, s.total, s.running.len()), (2, 6, 2));
        assert_eq!(
            s.running["data"].waiting.as_deref(),
            Some("PVC data-0: capacity 10Gi, waiting for 15Gi")
        );
        assert_eq!(s.running["app"].waiting, None);
        t.step_ended("data", true);
        t.step_ended("app", false);
        let s = t.snapshot();
        assert_eq!((s.done, s.running.len()), (3, 0));
        t.step_started("app", 5, "app/x", "x");
        t.end();
        assert!(t.snapshot().running.is_empty());
    }
}
