//! What `/metrics` reports, in the OpenMetrics text format
//! (`prometheus-client`). Every series carries the stack's name.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::RwLock;

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
    stack: RwLock<String>,
    synced_revision: Family<RevisionLabels, Gauge>,
    sync_duration: Family<StackLabels, Histogram, fn() -> Histogram>,
    syncs: Family<ResultLabels, Counter>,
    steps_executed: Family<KindLabels, Counter>,
    steps_failed: Family<KindLabels, Counter>,
    drift: Family<ReleaseLabels, Gauge>,
    last_error: Family<MessageLabels, Gauge>,
    last_error_time: Family<StackLabels, FloatGauge>,
    reconcile_cpu: Family<StackLabels, FloatGauge>,
    ready: AtomicBool,
}

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

impl Default for Metrics {
    fn default() -> Metrics {
        let mut registry = Registry::default();
        let m = Metrics {
            stack: RwLock::new(String::new()),
            synced_revision: Family::default(),
            sync_duration: Family::new_with_constructor(duration_histogram),
            syncs: Family::default(),
            steps_executed: Family::default(),
            steps_failed: Family::default(),
            drift: Family::default(),
            last_error: Family::default(),
            last_error_time: Family::default(),
            reconcile_cpu: Family::default(),
            ready: AtomicBool::new(false),
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
            "CPU time of the last reconcile pass",
            m.reconcile_cpu.clone(),
        );
        Metrics { registry, ..m }
    }
}

impl Metrics {
    fn stack(&self) -> Text {
        Text(self.stack.read().map(|s| s.clone()).unwrap_or_default())
    }

    pub fn set_stack(&self, name: &str) {
        if let Ok(mut s) = self.stack.write() {
            if *s != name {
                *s = name.to_string();
            }
        }
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub fn synced(&self, revision: &str) {
        self.synced_revision.clear();
        self.synced_revision
            .get_or_create(&RevisionLabels {
                stack: self.stack(),
                revision: revision.into(),
            })
            .set(1);
    }

    pub fn sync_result(&self, result: &str) {
        self.syncs
            .get_or_create(&ResultLabels {
                stack: self.stack(),
                result: result.into(),
            })
            .inc();
    }

    pub fn observe_duration(&self, seconds: f64) {
        self.sync_duration
            .get_or_create(&StackLabels {
                stack: self.stack(),
            })
            .observe(seconds);
    }

    pub fn steps_executed(&self, kind: &str, n: u64) {
        self.steps_executed
            .get_or_create(&KindLabels {
                stack: self.stack(),
                kind: kind.into(),
            })
            .inc_by(n);
    }

    pub fn step_failed(&self, kind: &str) {
        self.steps_failed
            .get_or_create(&KindLabels {
                stack: self.stack(),
                kind: kind.into(),
            })
            .inc();
    }

    pub fn drift(&self, release: &str, steps: u64) {
        self.drift
            .get_or_create(&ReleaseLabels {
                stack: self.stack(),
                release: release.into(),
            })
            .set(steps.min(i64::MAX as u64) as i64);
    }

    pub fn error(&self, message: &str) {
        self.last_error.clear();
        let stack = self.stack();
        self.last_error
            .get_or_create(&MessageLabels {
                stack: stack.clone(),
                message: message.into(),
            })
            .set(1);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        self.last_error_time
            .get_or_create(&StackLabels { stack })
            .set(now);
    }

    pub fn clear_error(&self) {
        self.last_error.clear();
        self.last_error
            .get_or_create(&MessageLabels {
                stack: self.stack(),
                message: Text(String::new()),
            })
            .set(1);
    }

    pub fn reconcile_cpu(&self, seconds: f64) {
        self.reconcile_cpu
            .get_or_create(&StackLabels {
                stack: self.stack(),
            })
            .set(seconds);
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
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
        m.set_stack("example");
        m.synced("abc");
        m.observe_duration(3.0);
        m.drift("data", 2);
        m.steps_executed("expand-pvc", 2);
        m.sync_result("succeeded");
        m.error("boom \"quoted\"");
        let t = m.render();
        for want in [
            "plimsoll_synced_revision_info{stack=\"example\",revision=\"abc\"} 1",
            "plimsoll_sync_duration_seconds_bucket{le=\"1.0\",stack=\"example\"} 0",
            "plimsoll_sync_duration_seconds_bucket{le=\"5.0\",stack=\"example\"} 1",
            "plimsoll_sync_duration_seconds_count{stack=\"example\"} 1",
            "plimsoll_drift{stack=\"example\",release=\"data\"} 2",
            "plimsoll_steps_executed_total{stack=\"example\",kind=\"expand-pvc\"} 2",
            "plimsoll_syncs_total{stack=\"example\",result=\"succeeded\"} 1",
            "message=\"boom \\\"quoted\\\"\"",
            "# EOF",
        ] {
            assert!(t.contains(want), "{want} in:\n{t}");
        }
        // A new revision replaces the old series.
        m.synced("def");
        let t = m.render();
        assert!(!t.contains("revision=\"abc\""), "{t}");
        m.clear_error();
        assert!(!m.render().contains("boom"));
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
