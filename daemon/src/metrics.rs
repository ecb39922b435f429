//! What `/metrics` reports, in the OpenMetrics text format
//! (`prometheus-client`). Every series carries the stack's name.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Buckets of the sync duration histogram, in seconds.
const DURATION_BUCKETS: [f64; 8] = [1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 3600.0];

/// The content type of [`Metrics::render`].
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A label value escaped as the exposition format requires (`\\`, `"`
/// and newlines): `prometheus-client` writes label values as they are,
/// and an error message or a name from a repository may contain any of
/// them.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct Text(String);

impl EncodeLabelValue for Text {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        use std::fmt::Write;
        for c in self.0.chars() {
            match c {
                '\\' => encoder.write_str("\\\\")?,
                '"' => encoder.write_str("\\\"")?,
                '\n' => encoder.write_str("\\n")?,
                c => encoder.write_char(c)?,
            }
        }
        Ok(())
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Text {
        Text(s.to_string())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StackLabels {
    stack: Text,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RevisionLabels {
    stack: Text,
    revision: Text,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    stack: Text,
    result: Text,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    stack: Text,
    kind: Text,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReleaseLabels {
    stack: Text,
    release: Text,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MessageLabels {
    stack: Text,
    message: Text,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// The daemon's metrics; shared between the reconcile loop and the HTTP
/// endpoint (all updates are atomic).
pub struct Metrics {
    registry: Registry,
    synced_revision: Family<RevisionLabels, Gauge>,
    sync_duration: Family<StackLabels, Histogram, fn() -> Histogram>,
    syncs: Family<ResultLabels, Counter>,
    steps_executed: Family<KindLabels, Counter>,
    steps_failed: Family<KindLabels, Counter>,
    drift: Family<ReleaseLabels, Gauge>,
    last_error: Family<MessageLabels, Gauge>,
    last_error_time: Family<StackLabels, FloatGauge>,
    reconcile_cpu: Family<StackLabels, FloatGauge>,
    reconcile_seconds: Family<StackLabels, FloatGauge>,
    owned_stacks: Gauge,
    peers: Gauge,
    /// The gauge series each stack has, to remove them when it leaves.
    series: Mutex<HashMap<String, Series>>,
}

/// A stack's gauge series with labels beyond the stack's name.
#[derive(Default)]
struct Series {
    revision: Option<String>,
    message: Option<String>,
    releases: BTreeSet<String>,
}

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

impl Default for Metrics {
    fn default() -> Metrics {
        let mut registry = Registry::default();
        let m = Metrics {
            synced_revision: Family::default(),
            sync_duration: Family::new_with_constructor(duration_histogram),
            syncs: Family::default(),
            steps_executed: Family::default(),
            steps_failed: Family::default(),
            drift: Family::default(),
            last_error: Family::default(),
            last_error_time: Family::default(),
            reconcile_cpu: Family::default(),
            reconcile_seconds: Family::default(),
            owned_stacks: Gauge::default(),
            peers: Gauge::default(),
            series: Mutex::new(HashMap::new()),
            registry: Registry::default(),
        };
        registry.register(
            "plimsoll_synced_revision_info",
            "The commit the cluster was last synced to",
            m.synced_revision.clone(),
        );
        registry.register(
            "plimsoll_sync_duration_seconds",
            "Duration of syncs that changed the cluster",
            m.sync_duration.clone(),
        );
        registry.register("plimsoll_syncs", "Syncs by result", m.syncs.clone());
        registry.register(
            "plimsoll_steps_executed",
            "Plan steps executed, by kind",
            m.steps_executed.clone(),
        );
        registry.register(
            "plimsoll_steps_failed",
            "Plan steps that failed, by kind",
            m.steps_failed.clone(),
        );
        registry.register(
            "plimsoll_drift",
            "Steps needed to bring a release back to the synced commit (0: no drift)",
            m.drift.clone(),
        );
        registry.register(
            "plimsoll_last_error_info",
            "The last error (empty when the last pass succeeded)",
            m.last_error.clone(),
        );
        registry.register(
            "plimsoll_last_error_timestamp_seconds",
            "When the last error happened",
            m.last_error_time.clone(),
        );
        registry.register(
            "plimsoll_reconcile_cpu_seconds",
            "CPU time of this process during the stack's last reconcile pass (passes of other stacks at the same time included)",
            m.reconcile_cpu.clone(),
        );
        registry.register(
            "plimsoll_reconcile_pass_seconds",
            "Wall time of the stack's last reconcile pass",
            m.reconcile_seconds.clone(),
        );
        registry.register(
            "plimsoll_owned_stacks",
            "Stacks this replica holds (owner leases)",
            m.owned_stacks.clone(),
        );
        registry.register(
            "plimsoll_peers",
            "Live replicas of this replica's group, itself included",
            m.peers.clone(),
        );
        Metrics { registry, ..m }
    }
}

impl Metrics {
    /// The exposition text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    fn series(&self, stack: &str, f: impl FnOnce(&mut Series)) {
        if let Ok(mut m) = self.series.lock() {
            f(m.entry(stack.to_string()).or_default());
        }
    }

    pub fn synced(&self, stack: &str, revision: &str) {
        let mut old = None;
        self.series(stack, |s| old = s.revision.replace(revision.to_string()));
        if let Some(old) = old {
            self.synced_revision.remove(&RevisionLabels {
                stack: stack.into(),
                revision: old.as_str().into(),
            });
        }
        self.synced_revision
            .get_or_create(&RevisionLabels {
                stack: stack.into(),
                revision: revision.into(),
            })
            .set(1);
    }

    pub fn sync_result(&self, stack: &str, result: &str) {
        self.syncs
            .get_or_create(&ResultLabels {
                stack: stack.into(),
                result: result.into(),
            })
            .inc();
    }

    pub fn observe_duration(&self, stack: &str, seconds: f64) {
        self.sync_duration
            .get_or_create(&StackLabels {
                stack: stack.into(),
            })
            .observe(seconds);
    }

    pub fn steps_executed(&self, stack: &str, kind: &str, n: u64) {
        self.steps_executed
            .get_or_create(&KindLabels {
                stack: stack.into(),
                kind: kind.into(),
            })
            .inc_by(n);
    }

    pub fn step_failed(&self, stack: &str, kind: &str) {
        self.steps_failed
            .get_or_create(&KindLabels {
                stack: stack.into(),
                kind: kind.into(),
            })
            .inc();
    }

    pub fn drift(&self, stack: &str, release: &str, steps: u64) {
        self.series(stack, |s| {
            s.releases.insert(release.to_string());
        });
        self.drift
            .get_or_create(&ReleaseLabels {
                stack: stack.into(),
                release: release.into(),
            })
            .set(steps.min(i64::MAX as u64) as i64);
    }

    fn set_message(&self, stack: &str, message: &str) {
        let mut old = None;
        self.series(stack, |s| old = s.message.replace(message.to_string()));
        if let Some(old) = old {
            self.last_error.remove(&MessageLabels {
                stack: stack.into(),
                message: old.as_str().into(),
            });
        }
        self.last_error
            .get_or_create(&MessageLabels {
                stack: stack.into(),
                message: message.into(),
            })
            .set(1);
    }

    pub fn error(&self, stack: &str, message: &str) {
        self.set_message(stack, message);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        self.last_error_time
            .get_or_create(&StackLabels {
                stack: stack.into(),
            })
            .set(now);
    }

    pub fn clear_error(&self, stack: &str) {
        self.set_message(stack, "");
    }

    /// CPU time of this process during the stack's last pass (other
    /// stacks' passes at the same time included), and its wall time.
    pub fn reconcile_pass(&self, stack: &str, cpu_seconds: f64, seconds: f64) {
        let labels = StackLabels {
            stack: stack.into(),
        };
        self.reconcile_cpu.get_or_create(&labels).set(cpu_seconds);
        self.reconcile_seconds.get_or_create(&labels).set(seconds);
    }

    /// The stacks held here and the live peers of the group.
    pub fn shard(&self, owned: usize, peers: usize) {
        self.owned_stacks.set(owned as i64);
        self.peers.set(peers as i64);
    }

    /// The stack is not held here any more: its gauges go (another
    /// replica reports them now); counters stay, as counters do.
    pub fn forget(&self, stack: &str) {
        let series = self.series.lock().ok().and_then(|mut m| m.remove(stack));
        let Some(series) = series else { return };
        if let Some(r) = series.revision {
            self.synced_revision.remove(&RevisionLabels {
                stack: stack.into(),
                revision: r.as_str().into(),
            });
        }
        if let Some(m) = series.message {
            self.last_error.remove(&MessageLabels {
                stack: stack.into(),
                message: m.as_str().into(),
            });
        }
        for release in series.releases {
            self.drift.remove(&ReleaseLabels {
                stack: stack.into(),
                release: release.as_str().into(),
            });
        }
        let labels = StackLabels {
            stack: stack.into(),
        };
        self.last_error_time.remove(&labels);
        self.reconcile_cpu.remove(&labels);
        self.reconcile_seconds.remove(&labels);
    }
}

/// CPU time of this process so far (user + system), from `getrusage`.
pub fn cpu_seconds() -> f64 {
    use nix::sys::resource::{getrusage, UsageWho};
    use nix::sys::time::TimeValLike;
    let Ok(u) = getrusage(UsageWho::RUSAGE_SELF) else {
        return 0.0;
    };
    (u.user_time().num_microseconds() + u.system_time().num_microseconds()) as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_in_the_openmetrics_text_format() {
        let m = Metrics::default();
        m.synced("example", "abc");
        m.observe_duration("example", 3.0);
        m.drift("example", "data", 2);
        m.steps_executed("example", "expand-pvc", 2);
        m.sync_result("example", "succeeded");
        m.error("example", "boom \"quoted\"");
        m.synced("other", "fff");
        m.shard(2, 3);
        let t = m.render();
        for want in [
            "plimsoll_synced_revision_info{stack=\"example\",revision=\"abc\"} 1",
            "plimsoll_synced_revision_info{stack=\"other\",revision=\"fff\"} 1",
            "plimsoll_sync_duration_seconds_bucket{le=\"1.0\",stack=\"example\"} 0",
            "plimsoll_sync_duration_seconds_bucket{le=\"5.0\",stack=\"example\"} 1",
            "plimsoll_sync_duration_seconds_count{stack=\"example\"} 1",
            "plimsoll_drift{stack=\"example\",release=\"data\"} 2",
            "plimsoll_steps_executed_total{stack=\"example\",kind=\"expand-pvc\"} 2",
            "plimsoll_syncs_total{stack=\"example\",result=\"succeeded\"} 1",
            "message=\"boom \\\"quoted\\\"\"",
            "plimsoll_owned_stacks 2",
            "plimsoll_peers 3",
            "# EOF",
        ] {
            assert!(t.contains(want), "{want} in:\n{t}");
        }
        // A new revision replaces the stack's old series, not another's.
        m.synced("example", "def");
        let t = m.render();
        assert!(!t.contains("revision=\"abc\""), "{t}");
        assert!(t.contains("revision=\"fff\""), "{t}");
        m.clear_error("example");
        assert!(!m.render().contains("boom"));
        // A stack that leaves takes its gauges along.
        m.forget("example");
        let t = m.render();
        assert!(!t.contains("revision=\"def\""), "{t}");
        assert!(!t.contains("release=\"data\""), "{t}");
        assert!(t.contains("revision=\"fff\""), "{t}");
    }

    #[test]
    fn cpu_time_grows_with_work() {
        let before = cpu_seconds();
        let mut x = 0u64;
        for i in 0..50_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(cpu_seconds() > before, "{before}");
    }
}
