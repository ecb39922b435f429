//! The executor: performs a plan's steps in order against the cluster,
//! recording each completed step in the stack's journal. **I/O edge.**
//!
//! **Invariants** (each enforced here, each with a real-cluster test):
//! - a PVC is only ever patched to a larger request, never deleted;
//! - a StatefulSet is only deleted with orphan propagation and a uid
//!   precondition, so one re-created by someone else is never deleted;
//! - every step checks its own precondition first, so running a step twice
//!   (a resumed sync) does nothing the second time;
//! - a failed step stops the sync; later steps (and later stages) do not
//!   run;
//! - a stop request (SIGTERM) is honoured between steps, but never between
//!   a StatefulSet's orphan delete and the upgrade that re-creates it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use plimsoll_planner::health::{Health, HealthRules};
use plimsoll_planner::journal::{step_kind, Journal, JournalError, JournalStatus, JournalStep};
use plimsoll_planner::phased::{self, ListChange};
use plimsoll_planner::plan::Step;
use plimsoll_planner::redact::{Redactor, Scrubber};
use plimsoll_planner::state::{quantity_bytes, DesiredPatch, DesiredResource, ResourceRef};

use crate::journal_store::{self, JournalLocation, StoreError};
use crate::lease::LeaseCheck;
use crate::progress::RunTracker;

/// What `helm upgrade` needs for one release.
#[derive(Clone, Debug)]
pub struct ReleaseSource {
    /// Chart reference as helm takes it (a directory, a `.tgz`, `repo/name`).
    pub chart: String,
    pub version: String,
    /// The rendered values file.
    pub values_file: PathBuf,
    /// The same values, to recognise an upgrade already done.
    pub values: serde_json::Value,
    /// StatefulSets the chart renders (an upgrade is not done while one is
    /// missing).
    pub statefulsets: Vec<String>,
}

/// Time limits and the helm executable.
#[derive(Clone, Debug)]
pub struct Settings {
    pub helm: PathBuf,
    /// The cluster Plimsoll reads and writes: helm is told the same
    /// kubeconfig and context, so that it changes that cluster and no
    /// other (by itself it would take `$KUBECONFIG`'s current context).
    pub cluster: crate::client::ClusterOptions,
    /// Releases of one stage run at once, at most (`--concurrency`).
    pub concurrency: usize,
    pub expansion_timeout: Duration,
    pub helm_timeout: Duration,
    pub ready_timeout: Duration,
    pub poll: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            helm: PathBuf::from("helm"),
            cluster: crate::client::ClusterOptions::default(),
            concurrency: 4,
            expansion_timeout: Duration::from_secs(600),
            helm_timeout: Duration::from_secs(600),
            ready_timeout: Duration::from_secs(600),
            poll: Duration::from_millis(500),
        }
    }
}

/// Why a step did not complete.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// A wait interrupted by a stop request: nothing is half done.
    #[error("stop requested")]
    Stopped,
    #[error("the stack's lease was lost to another syncer")]
    LeaseLost,
    #[error("the stack's lease could not be renewed")]
    LeaseUnconfirmed,
    #[error("{what}: {source}")]
    Kube {
        what: String,
        #[source]
        source: kube::Error,
    },
    /// The storage driver reported a failed expansion.
    #[error("{0}")]
    ResizeFailed(String),
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    Helm(String),
    /// A resource waited on failed by its health rule (the operator's own
    /// reason).
    #[error("{0}")]
    ResourceFailed(String),
    /// A step the cluster cannot perform as planned (a kind not served, a
    /// bad quantity, a release without rendered values).
    #[error("{0}")]
    Invalid(String),
}

impl StepError {
    fn kube(what: impl Into<String>) -> impl FnOnce(kube::Error) -> StepError {
        let what = what.into();
        move |source| StepError::Kube { what, source }
    }
}

/// What ended an execution that did not complete.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("stopped at step {step} of release {release}: {error}")]
    Step {
        step: String,
        release: String,
        error: StepError,
    },
    #[error("journal: {0}")]
    Journal(#[from] JournalError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("the stack's lease is not this syncer's any more; nothing more was written")]
    LeaseLost,
}

/// The step that failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailedStep {
    pub id: String,
    pub kind: &'static str,
    pub release: String,
}

/// How an execution ended.
#[derive(Debug, Default)]
pub enum RunEnd {
    #[default]
    Completed,
    /// A stop request ended it early, before this step.
    Stopped { before: String },
    /// A step (or the journal) failed; nothing after it ran.
    Failed {
        step: Option<FailedStep>,
        error: ExecError,
    },
}

/// What an execution did, on every path (success, stop, failure).
#[derive(Debug, Default)]
pub struct Report {
    /// Steps that acted, by kind.
    pub executed: BTreeMap<String, u32>,
    /// Steps whose precondition showed them already done.
    pub skipped: u32,
    pub end: RunEnd,
}

impl Report {
    pub fn failed_step(&self) -> Option<&FailedStep> {
        match &self.end {
            RunEnd::Failed { step, .. } => step.as_ref(),
            _ => None,
        }
    }

    pub fn stopped_before(&self) -> Option<&str> {
        match &self.end {
            RunEnd::Stopped { before } => Some(before),
            _ => None,
        }
    }

    /// One line: `N step(s) executed (…), M already done`.
    pub fn summary(&self) -> String {
        let executed: u32 = self.executed.values().sum();
        let kinds: Vec<String> = self
            .executed
            .iter()
            .map(|(k, n)| format!("{n} {k}"))
            .collect();
        format!(
            "{executed} step(s) executed{}, {} already done",
            if kinds.is_empty() {
                String::new()
            } else {
                format!(" ({})", kinds.join(", "))
            },
            self.skipped
        )
    }
}

/// Where progress lines go (one line per event): the caller decides
/// (a terminal, the daemon's log); the executor never logs them itself.
pub type Progress = Arc<dyn Fn(&str) + Send + Sync>;

/// What the releases of a run share: the journal (one save at a time),
/// the report, whether new steps may start.
struct Shared {
    journal: tokio::sync::Mutex<Journal>,
    report: std::sync::Mutex<Report>,
    /// Set by a failure: no release starts another step (except to finish
    /// an orphan delete's upgrade).
    halt: AtomicBool,
    /// Steps started so far (for `[n/total]`).
    started: std::sync::atomic::AtomicUsize,
    total: usize,
    abort_kind: Option<String>,
}

/// How one release's run ended.
enum ReleaseEnd {
    Done,
    /// Not started, or stopped at a safe boundary after another failed.
    NotStarted,
    /// A stop request ended it before this step.
    Stopped(String),
    Failed(ExecError),
}

/// Performs plans against one cluster.
pub struct Executor {
    pub client: kube::Client,
    pub settings: Settings,
    pub sources: BTreeMap<String, ReleaseSource>,
    /// The declared patches with their operations in clear: a plan and
    /// its journal carry them redacted.
    pub patches: Vec<DesiredPatch>,
    pub redactor: Redactor,
    /// How resources waited on are judged.
    pub health: Arc<HealthRules>,
    /// The custom resources as rendered (what a health rule compares with).
    pub custom_resources: Vec<DesiredResource>,
    /// Removes the desired state's secrets from every line and message.
    pub scrubber: Scrubber,
    pub journal_at: JournalLocation,
    /// Set by a stop request (SIGTERM); honoured at the next safe boundary.
    pub stop: Arc<AtomicBool>,
    /// The stack's lease as this process knows it: consulted before every
    /// write to the cluster (journal included) and every helm call.
    pub lease: LeaseCheck,
    pub progress: Progress,
    /// What runs now, for a status page (`None`: nobody looks).
    pub tracker: Option<RunTracker>,
    /// Whether the API server validates fields itself (asked once, at the
    /// first `helm upgrade`).
    pub server_validates_fields: tokio::sync::OnceCell<bool>,
}

/// A release before its `helm upgrade` step.
enum BeforeUpgrade {
    /// At the desired version and values, deployed, its StatefulSets there.
    Done,
    /// To upgrade; `pending`: its newest revision was left pending (or
    /// could not be read), which [`Executor::resolve_pending`] settles.
    Needed { pending: bool },
}

tokio::task_local! {
    /// The release whose steps the current future performs (the releases
    /// of a stage run side by side in one task).
    static CURRENT_RELEASE: String;
}

/// Fault injection for the resumption tests: the process aborts (as if
/// killed) right after the journal records the last of the first run of
/// steps of a kind. Read from `PLIMSOLL_FAULT_ABORT_AFTER`.
mod fault {
    use super::*;

    pub fn abort_after() -> Option<String> {
        std::env::var("PLIMSOLL_FAULT_ABORT_AFTER")
            .ok()
            .filter(|s| !s.is_empty())
    }

    /// Aborts when `done` is the last step of the configured kind in a row.
    pub fn abort_if_due(kind: Option<&str>, done: &Step, journal: &Journal) {
        let Some(kind) = kind else { return };
        let next_kind = journal
            .next_step()
            .and_then(|n| serde_json::from_value::<Step>(n.step.clone()).ok())
            .map(|s| step_kind(&s));
        if kind == step_kind(done) && next_kind != Some(kind) {
            eprintln!("PLIMSOLL_FAULT_ABORT_AFTER={kind}: aborting");
            std::process::abort();
        }
    }
}

impl Executor {
    fn say(&self, line: &str) {
        (self.progress)(&self.scrubber.scrub(line));
    }

    /// Says what a step waits on, and records it as the condition now of
    /// the release's running step. `say` is false when only the record is
    /// due (lines are said when the condition changes, or every 5 s).
    fn waiting(&self, line: &str, say: bool) {
        let line = self.scrubber.scrub(line);
        if say {
            (self.progress)(&line);
        }
        if let Some(t) = &self.tracker {
            let _ = CURRENT_RELEASE.try_with(|r| t.waiting(r, line.trim()));
        }
    }

    /// Runs the journal's remaining steps in order, saving the journal
    /// after each. The report says how it ended, failures included.
    pub async fn run(&self, journal: &mut Journal) -> Report {
        let mut report = Report::default();
        if let Some(t) = &self.tracker {
            t.begin(journal.completed.len(), journal.steps.len());
        }
        let result = self.run_steps(journal, &mut report).await;
        if let Some(t) = &self.tracker {
            t.end();
        }
        if let Err(e) = result {
            let step = match &e {
                ExecError::Step { step, release, .. } => Some(FailedStep {
                    id: step.clone(),
                    kind: journal
                        .steps
                        .iter()
                        .find(|s| s.id == *step)
                        .and_then(|s| serde_json::from_value::<Step>(s.step.clone()).ok())
                        .map_or("unknown", |s| step_kind(&s)),
                    release: release.clone(),
                }),
                _ => None,
            };
            report.end = RunEnd::Failed { step, error: e };
        }
        report
    }

    /// Runs the stages in order; the releases of a stage side by side (at
    /// most `settings.concurrency` at once), each release's steps in
    /// order, the journal saved after every step (one save at a time). A
    /// failure stops new starts: releases already running stop at their
    /// next safe boundary (never between an orphan delete and the upgrade
    /// that re-creates the StatefulSet), and the next stage never starts.
    async fn run_steps(&self, journal: &mut Journal, report: &mut Report) -> Result<(), ExecError> {
        journal.status = JournalStatus::Running;
        self.save(journal).await?;
        // Stages in the journal's order, each with its releases.
        let mut stages: Vec<(String, Vec<String>)> = Vec::new();
        for s in &journal.steps {
            let key = if s.stage.is_empty() {
                format!("\0{}", s.release)
            } else {
                s.stage.clone()
            };
            match stages.last_mut() {
                Some((k, releases)) if *k == key => {
                    if !releases.contains(&s.release) {
                        releases.push(s.release.clone());
                    }
                }
                _ => stages.push((key, vec![s.release.clone()])),
            }
        }
        let shared = Shared {
            started: std::sync::atomic::AtomicUsize::new(journal.completed.len()),
            total: journal.steps.len(),
            journal: tokio::sync::Mutex::new(journal.clone()),
            report: std::sync::Mutex::new(std::mem::take(report)),
            halt: AtomicBool::new(false),
            abort_kind: fault::abort_after(),
        };
        let outcome = self.run_stages(&stages, &shared).await;
        *journal = shared.journal.into_inner();
        *report = shared
            .report
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match outcome? {
            Some(before) => {
                report.end = RunEnd::Stopped { before };
                Ok(())
            }
            None => {
                journal.status = JournalStatus::Succeeded;
                journal.message.clear();
                self.save(journal).await
            }
        }
    }

    /// The stages one after the other; `Some(step)` when a stop request
    /// ended it before `step`.
    async fn run_stages(
        &self,
        stages: &[(String, Vec<String>)],
        shared: &Shared,
    ) -> Result<Option<String>, ExecError> {
        for (_, releases) in stages {
            let limit = tokio::sync::Semaphore::new(self.settings.concurrency.max(1));
            let ends = futures::future::join_all(releases.iter().map(|release| {
                let limit = &limit;
                async move {
                    let Ok(_permit) = limit.acquire().await else {
                        return ReleaseEnd::NotStarted;
                    };
                    if shared.halt.load(Ordering::SeqCst) {
                        return ReleaseEnd::NotStarted;
                    }
                    CURRENT_RELEASE
                        .scope(release.clone(), self.run_release(release, shared))
                        .await
                }
            }))
            .await;
            let mut stopped = None;
            for end in ends {
                match end {
                    ReleaseEnd::Failed(e) => return Err(e),
                    ReleaseEnd::Stopped(before) => stopped = stopped.or(Some(before)),
                    ReleaseEnd::Done | ReleaseEnd::NotStarted => {}
                }
            }
            if stopped.is_some() {
                return Ok(stopped);
            }
        }
        Ok(None)
    }

    /// One release's remaining steps, in order.
    async fn run_release(&self, release: &str, shared: &Shared) -> ReleaseEnd {
        // A StatefulSet orphan-deleted whose upgrade has not run yet.
        let mut orphaned: Option<String> = None;
        loop {
            let js = {
                let j = shared.journal.lock().await;
                match j
                    .steps
                    .iter()
                    .find(|s| s.release == release && !j.completed.contains(&s.id))
                {
                    Some(s) => s.clone(),
                    None => return ReleaseEnd::Done,
                }
            };
            let step: Step = match serde_json::from_value(js.step.clone()) {
                Ok(s) => s,
                Err(e) => {
                    shared.halt.store(true, Ordering::SeqCst);
                    return ReleaseEnd::Failed(
                        JournalError::from_message(format!("step {}: {e}", js.id)).into(),
                    );
                }
            };
            if orphaned.is_none() && self.stop.load(Ordering::SeqCst) {
                self.say(&format!("stop requested: stopping before {}", js.id));
                return ReleaseEnd::Stopped(js.id);
            }
            if orphaned.is_none() && shared.halt.load(Ordering::SeqCst) {
                // Another release of the stage failed: stop here, safely.
                return ReleaseEnd::NotStarted;
            }
            if let Err(error) = self.await_lease().await {
                return self.release_failed(shared, &js, error).await;
            }
            let n = shared.started.fetch_add(1, Ordering::SeqCst) + 1;
            let described = step.describe();
            self.say(&format!("[{n}/{}] {described}", shared.total));
            if let Some(t) = &self.tracker {
                t.step_started(release, n, &js.id, &self.scrubber.scrub(&described));
            }
            let performed = self.perform(&step).await;
            if let Some(t) = &self.tracker {
                t.step_ended(release, performed.is_ok());
            }
            match performed {
                Ok(true) => {
                    if let Ok(mut r) = shared.report.lock() {
                        *r.executed.entry(step_kind(&step).to_string()).or_default() += 1;
                    }
                }
                Ok(false) => {
                    if let Ok(mut r) = shared.report.lock() {
                        r.skipped += 1;
                    }
                    self.say("  already done");
                }
                Err(StepError::Stopped) if orphaned.is_none() => {
                    self.say(&format!(
                        "stop requested: stopping before {} completes",
                        js.id
                    ));
                    return ReleaseEnd::Stopped(js.id);
                }
                Err(error) => return self.release_failed(shared, &js, error).await,
            }
            match &step {
                Step::RecreateStatefulSet { statefulset, .. } => {
                    orphaned = Some(statefulset.clone())
                }
                Step::HelmUpgrade { .. } => orphaned = None,
                _ => {}
            }
            let mut j = shared.journal.lock().await;
            j.completed.push(js.id.clone());
            if let Err(error) = self.await_lease().await {
                drop(j);
                return self.release_failed(shared, &js, error).await;
            }
            if let Err(e) = self.save(&j).await {
                shared.halt.store(true, Ordering::SeqCst);
                return ReleaseEnd::Failed(e);
            }
            fault::abort_if_due(shared.abort_kind.as_deref(), &step, &j);
        }
    }

    /// A release's step failed: no new starts, the failure recorded.
    async fn release_failed(
        &self,
        shared: &Shared,
        js: &JournalStep,
        error: StepError,
    ) -> ReleaseEnd {
        shared.halt.store(true, Ordering::SeqCst);
        let mut j = shared.journal.lock().await;
        ReleaseEnd::Failed(self.fail(&mut j, js, error).await)
    }

    /// Saves the journal, only while the lease is confirmed: a syncer
    /// that lost it must not write over the new holder's journal.
    async fn save(&self, journal: &Journal) -> Result<(), ExecError> {
        if !self.lease.is_confirmed() {
            return Err(ExecError::LeaseLost);
        }
        journal_store::save(&self.client, &self.journal_at, journal).await?;
        Ok(())
    }

    /// Before every write: the lease must be confirmed. While it is
    /// unconfirmed (the API server unreachable, or this process was
    /// paused), wait up to the ready timeout for a renewal to say whose it
    /// is.
    async fn await_lease(&self) -> Result<(), StepError> {
        let paused = Instant::now();
        let mut said = false;
        while !self.lease.is_confirmed()
            && !self.lease.is_lost()
            && paused.elapsed() < self.settings.ready_timeout
        {
            if !said {
                self.say("  the lease is unconfirmed (API server unreachable, or this process was paused); waiting before writing");
                said = true;
            }
            tokio::time::sleep(self.settings.poll.min(Duration::from_millis(200))).await;
        }
        if self.lease.is_lost() {
            return Err(StepError::LeaseLost);
        }
        if !self.lease.is_confirmed() {
            return Err(StepError::LeaseUnconfirmed);
        }
        Ok(())
    }

    /// Between two polls of a wait: stop once the lease is another's, a
    /// stop was asked, or `limit` has passed (saying `timeout()`).
    fn between_polls(
        &self,
        start: Instant,
        limit: Duration,
        timeout: impl FnOnce() -> String,
    ) -> Result<(), StepError> {
        self.still_held()?;
        if self.stop.load(Ordering::SeqCst) {
            return Err(StepError::Stopped);
        }
        if start.elapsed() > limit {
            return Err(StepError::Timeout(timeout()));
        }
        Ok(())
    }

    /// During a wait: stop waiting once the lease is another's.
    fn still_held(&self) -> Result<(), StepError> {
        if self.lease.is_lost() {
            Err(StepError::LeaseLost)
        } else {
            Ok(())
        }
    }

    async fn fail(&self, journal: &mut Journal, js: &JournalStep, error: StepError) -> ExecError {
        journal.status = JournalStatus::Failed;
        journal.message = self.scrubber.scrub(&format!("{}: {error}", js.id));
        if !self.lease.is_confirmed() {
            self.say("  the lease is not this syncer's any more: nothing more is written, the journal included");
        } else if let Err(e) = journal_store::save(&self.client, &self.journal_at, journal).await {
            tracing::warn!("cannot record the failure in the journal: {e}");
        }
        ExecError::Step {
            step: js.id.clone(),
            release: js.release.clone(),
            error,
        }
    }

    /// Performs one step; `Ok(false)` when its precondition shows it done.
    async fn perform(&self, step: &Step) -> Result<bool, StepError> {
        match step {
            Step::ExpandPvc {
                namespace, pvc, to, ..
            } => self.expand_pvc(namespace, pvc, to).await,
            Step::WaitForExpansion { namespace, pvc, to } => {
                self.wait_for_expansion(namespace, pvc, to).await
            }
            Step::PatchResource {
                target, operations, ..
            } => self.patch_resource(target, operations).await,
            Step::RecreateStatefulSet {
                namespace,
                statefulset,
                uid,
                ..
            } => self.orphan_delete(namespace, statefulset, uid).await,
            Step::HelmUpgrade {
                namespace,
                release,
                restores,
                ..
            } => {
                self.helm_upgrade(namespace, release, restores.as_ref())
                    .await
            }
            Step::WaitForReady {
                namespace,
                statefulsets,
                deployments,
                daemonsets,
                resources,
                timeout_seconds,
                ..
            } => {
                let limit = self.ready_limit(*timeout_seconds);
                self.wait_for_ready(
                    namespace,
                    [statefulsets, deployments, daemonsets],
                    resources,
                    limit,
                )
                .await
            }
            Step::WaitForOperatorExpansion {
                namespace,
                pvc,
                to,
                resource,
            } => {
                self.wait_for_expansion(namespace, pvc, to)
                    .await
                    .map_err(|e| match e {
                        // Name the operator: it is the one to act.
                        StepError::Timeout(m) | StepError::ResizeFailed(m) => StepError::Timeout(format!(
                            "{m}; the operator of {}/{} resizes this claim: check that it allows volume expansion (Percona: spec.enableVolumeExpansion) and its logs",
                            resource.kind, resource.name
                        )),
                        other => other,
                    })
            }
            Step::ChangeListElement {
                target,
                path,
                key,
                change,
                element,
                after,
            } => {
                self.change_list_element(target, path, key, *change, element, after)
                    .await
            }
            Step::WaitForGone {
                resource,
                timeout_seconds,
                ..
            } => {
                self.wait_for_gone(resource, self.ready_limit(*timeout_seconds))
                    .await
            }
            Step::WaitForHealthy {
                namespace,
                resources,
                timeout_seconds,
                ..
            } => {
                let limit = self.ready_limit(*timeout_seconds);
                self.wait_for_ready(namespace, [&[], &[], &[]], resources, limit)
                    .await
            }
        }
    }

    /// A release's own wait limit, else the sync's `--ready-timeout`.
    fn ready_limit(&self, seconds: Option<u64>) -> Duration {
        seconds.map_or(self.settings.ready_timeout, Duration::from_secs)
    }

    /// The health of a resource by the stack's rules; `Err` with why it
    /// cannot be read (missing, not served).
    async fn resource_health(&self, target: &ResourceRef) -> Result<Health, String> {
        let api = match crate::observe::api_for(&self.client, target).await {
            Ok(Some(api)) => api,
            Ok(None) => return Err("the kind is not served (is its CRD installed?)".into()),
            Err(e) => return Err(e.to_string()),
        };
        let object = match api.get_opt(&target.name).await {
            Ok(Some(o)) => serde_json::to_value(&o).map_err(|e| e.to_string())?,
            Ok(None) => return Err("missing".into()),
            Err(e) => return Err(e.to_string()),
        };
        let desired = self
            .custom_resources
            .iter()
            .find(|c| c.target == *target)
            .map(|c| &c.object);
        Ok(self.health.health(&object, desired))
    }

    async fn expand_pvc(&self, ns: &str, name: &str, to: &str) -> Result<bool, StepError> {
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), ns);
        let pvc = api
            .get(name)
            .await
            .map_err(StepError::kube(format!("PVC {name}")))?;
        let requested = pvc_request(&pvc);
        let (have, want) = (
            quantity_bytes(&requested),
            quantity_bytes(to).ok_or_else(|| StepError::Invalid(format!("bad quantity {to}")))?,
        );
        if have.is_some_and(|h| h >= want) {
            return Ok(false);
        }
        let body = serde_json::json!({"spec": {"resources": {"requests": {"storage": to}}}});
        self.await_lease().await?;
        api.patch(name, &PatchParams::default(), &Patch::Merge(&body))
            .await
            .map_err(StepError::kube(format!("PVC {name}")))?;
        Ok(true)
    }

    async fn wait_for_expansion(&self, ns: &str, name: &str, to: &str) -> Result<bool, StepError> {
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), ns);
        let want =
            quantity_bytes(to).ok_or_else(|| StepError::Invalid(format!("bad quantity {to}")))?;
        let start = Instant::now();
        let mut first = true;
        let mut last_report = Instant::now();
        loop {
            let (capacity, conditions) = match api.get(name).await {
                Ok(pvc) => (pvc_capacity(&pvc), pvc_conditions(&pvc)),
                // The API server may be restarting: keep waiting.
                Err(e) => (String::new(), vec![format!("unreadable: {e}")]),
            };
            let resizing = conditions.iter().any(|c| c.contains("Resiz"));
            if quantity_bytes(&capacity).is_some_and(|c| c >= want) && !resizing {
                return Ok(!first);
            }
            first = false;
            // v1.20: a `VolumeResizeFailed` condition; v1.32: the resize
            // status the resizer sets (`allocatedResourceStatuses`), whose
            // `*Infeasible` states mean it will not grow without a change.
            let failed: Vec<&str> = conditions
                .iter()
                .filter(|c| c.contains("VolumeResizeFailed") || c.contains("ResizeInfeasible"))
                .map(String::as_str)
                .collect();
            if !failed.is_empty() {
                let failed = failed.join(", ");
                return Err(StepError::ResizeFailed(format!(
                    "the storage driver failed to expand PVC {name} to {to} ({failed}); capacity is {capacity}"
                )));
            }
            self.between_polls(start, self.settings.expansion_timeout, || {
                format!(
                    "PVC {name} did not reach {to} within {}s (capacity {}, conditions: {})",
                    self.settings.expansion_timeout.as_secs(),
                    if capacity.is_empty() {
                        "unknown"
                    } else {
                        &capacity
                    },
                    if conditions.is_empty() {
                        "none".to_string()
                    } else {
                        conditions.join(", ")
                    }
                )
            })?;
            let due = last_report.elapsed() > Duration::from_secs(5);
            self.waiting(
                &format!(
                    "  PVC {name}: capacity {}, waiting for {to} ({}s){}",
                    if capacity.is_empty() {
                        "unknown"
                    } else {
                        &capacity
                    },
                    start.elapsed().as_secs(),
                    if conditions.is_empty() {
                        String::new()
                    } else {
                        format!("; {}", conditions.join(", "))
                    }
                ),
                due,
            );
            if due {
                last_report = Instant::now();
            }
            tokio::time::sleep(self.settings.poll).await;
        }
    }

    /// Sends the declared RFC 6902 patch: the stack file's operations for
    /// the target, which must be the ones the plan shows (redacted alike).
    /// Done already when the API server applies it without a change (the
    /// resourceVersion stays): the server is the one place the patch is
    /// applied.
    async fn patch_resource(
        &self,
        target: &ResourceRef,
        shown: &serde_json::Value,
    ) -> Result<bool, StepError> {
        let operations = self
            .patches
            .iter()
            .filter(|p| p.target == *target)
            .map(|p| &p.operations)
            .find(|ops| self.redactor.redact_operations(ops, target.is_secret()) == *shown)
            .ok_or_else(|| {
                StepError::Invalid(format!(
                    "{target}: the planned patch is not one the stack file declares"
                ))
            })?;
        let api = crate::observe::api_for(&self.client, target)
            .await
            .map_err(StepError::kube(target.to_string()))?
            .ok_or_else(|| {
                StepError::Invalid(format!("{target}: the kind is not served by the cluster"))
            })?;
        let before = api
            .get(&target.name)
            .await
            .map_err(StepError::kube(target.to_string()))?;
        let ops: json_patch::Patch = serde_json::from_value(operations.clone())
            .map_err(|e| StepError::Invalid(format!("{target}: not an RFC 6902 patch: {e}")))?;
        self.await_lease().await?;
        let after = api
            .patch(
                &target.name,
                &PatchParams::default(),
                &Patch::<()>::Json(ops),
            )
            .await
            .map_err(StepError::kube(target.to_string()))?;
        Ok(after.metadata.resource_version != before.metadata.resource_version)
    }

    /// One phase of a phased list's move. Done already when the live list
    /// has `after`'s elements; otherwise the live list must be the one the
    /// phase starts from (one element fewer, or more), and the edit is a
    /// JSON patch that first tests the list as read, so that a concurrent
    /// edit fails it rather than being overwritten. An added element is
    /// taken whole from the declared patches applied to the live object.
    async fn change_list_element(
        &self,
        target: &ResourceRef,
        path: &str,
        key: &str,
        change: ListChange,
        element: &str,
        after: &[String],
    ) -> Result<bool, StepError> {
        let invalid = |m: String| StepError::Invalid(format!("{target}: {path}: {m}"));
        let api = crate::observe::api_for(&self.client, target)
            .await
            .map_err(StepError::kube(target.to_string()))?
            .ok_or_else(|| invalid("the kind is not served by the cluster".into()))?;
        let live = api
            .get(&target.name)
            .await
            .map_err(StepError::kube(target.to_string()))?;
        let live = serde_json::to_value(&live).map_err(|e| invalid(e.to_string()))?;
        let live_list = live.pointer(path).cloned();
        let have = phased::keys(live_list.as_ref(), key).map_err(invalid)?;
        let same =
            |a: &[String], b: &[String]| a.len() == b.len() && a.iter().all(|k| b.contains(k));
        if same(&have, after) {
            return Ok(false);
        }
        let mut from: Vec<String> = after.to_vec();
        match change {
            ListChange::Add => from.retain(|k| k != element),
            ListChange::Remove => from.push(element.to_string()),
        }
        if !same(&have, &from) {
            return Err(invalid(format!(
                "the list is [{}], not [{}] as planned; plan again",
                have.join(", "),
                from.join(", ")
            )));
        }
        // The list the declared patches make of the live object.
        let mut desired = live.clone();
        for p in self.patches.iter().filter(|p| p.target == *target) {
            let ops: json_patch::Patch = serde_json::from_value(p.operations.clone())
                .map_err(|e| invalid(format!("not an RFC 6902 patch: {e}")))?;
            json_patch::patch(&mut desired, &ops).map_err(|e| invalid(e.to_string()))?;
        }
        let desired_list = desired.pointer(path).cloned();
        let desired_keys = phased::keys(desired_list.as_ref(), key).map_err(invalid)?;
        let mut items: Vec<serde_json::Value> = live_list
            .as_ref()
            .and_then(serde_json::Value::as_array)
            .cloned()
            .unwrap_or_default();
        let named =
            |v: &serde_json::Value| v.get(key).and_then(serde_json::Value::as_str) == Some(element);
        match change {
            ListChange::Add => {
                let item = desired_list
                    .as_ref()
                    .and_then(serde_json::Value::as_array)
                    .and_then(|a| a.iter().find(|v| named(v)))
                    .ok_or_else(|| {
                        invalid(format!(
                            "the declared patches no longer add {element}; plan again"
                        ))
                    })?;
                items.push(item.clone());
            }
            ListChange::Remove => {
                if desired_keys.iter().any(|k| k == element) {
                    return Err(invalid(format!(
                        "the declared patches keep {element}; plan again"
                    )));
                }
                items.retain(|v| !named(v));
            }
        }
        let value = if same(after, &desired_keys) {
            desired_list.unwrap_or_default()
        } else {
            serde_json::Value::Array(items)
        };
        let mut ops = Vec::new();
        if let Some(l) = &live_list {
            ops.push(serde_json::json!({"op": "test", "path": path, "value": l}));
        }
        ops.push(serde_json::json!({
            "op": if live_list.is_some() { "replace" } else { "add" },
            "path": path,
            "value": value,
        }));
        let ops: json_patch::Patch = serde_json::from_value(serde_json::Value::Array(ops))
            .map_err(|e| invalid(e.to_string()))?;
        self.await_lease().await?;
        api.patch(
            &target.name,
            &PatchParams::default(),
            &Patch::<()>::Json(ops),
        )
        .await
        .map_err(StepError::kube(target.to_string()))?;
        Ok(true)
    }

    /// Until `resource` no longer exists.
    async fn wait_for_gone(
        &self,
        resource: &ResourceRef,
        limit: Duration,
    ) -> Result<bool, StepError> {
        let what = format!("{}/{}", resource.kind, resource.name);
        let start = Instant::now();
        let mut first = true;
        let mut last_report: Option<Instant> = None;
        loop {
            let api = crate::observe::api_for(&self.client, resource).await;
            let state = match api {
                // A kind no longer served has no objects left.
                Ok(None) => Ok(None),
                Ok(Some(api)) => api.get_opt(&resource.name).await.map(|o| o.map(|_| ())),
                Err(e) => Err(e),
            };
            match state {
                Ok(None) => return Ok(!first),
                Ok(Some(())) => {}
                // The API server may be restarting: keep waiting.
                Err(e) => tracing::debug!("{what}: {e}"),
            }
            first = false;
            self.between_polls(start, limit, || format!(
                    "{what} still exists after {}s; its operator removes it once the element is gone from the list (check the operator's logs and the resource's events)",
                    limit.as_secs()
                ))?;
            let due = last_report.is_none_or(|at| at.elapsed() > Duration::from_secs(5));
            self.waiting(&format!("  waiting: {what} to be gone"), due);
            if due {
                last_report = Some(Instant::now());
            }
            tokio::time::sleep(self.settings.poll).await;
        }
    }

    async fn orphan_delete(&self, ns: &str, name: &str, uid: &str) -> Result<bool, StepError> {
        let api: Api<StatefulSet> = Api::namespaced(self.client.clone(), ns);
        let Some(live) = api
            .get_opt(name)
            .await
            .map_err(StepError::kube(format!("StatefulSet {name}")))?
        else {
            return Ok(false);
        };
        let live_uid = live.metadata.uid.clone().unwrap_or_default();
        if live_uid != uid {
            self.say(&format!(
                "  StatefulSet {name} was re-created since the plan (uid {live_uid}, planned {uid}); not deleting it"
            ));
            return Ok(false);
        }
        if live.metadata.deletion_timestamp.is_none() {
            let params = DeleteParams {
                propagation_policy: Some(kube::api::PropagationPolicy::Orphan),
                preconditions: Some(kube::api::Preconditions {
                    uid: Some(uid.to_string()),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            self.await_lease().await?;
            match api.delete(name, &params).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => return Ok(false),
                Err(source) => {
                    return Err(StepError::Kube {
                        what: format!("StatefulSet {name}"),
                        source,
                    })
                }
            }
        }
        // The garbage collector removes the orphan finalizer; the upgrade
        // can only re-create the StatefulSet once it is gone.
        let start = Instant::now();
        loop {
            match api.get_opt(name).await {
                Ok(None) => return Ok(true),
                Ok(Some(s)) if s.metadata.uid.as_deref() != Some(uid) => return Ok(true),
                _ => {}
            }
            if start.elapsed() > self.settings.ready_timeout {
                return Err(StepError::Timeout(format!(
                    "StatefulSet {name} was not removed within {}s (orphan finalizer still pending?)",
                    self.settings.ready_timeout.as_secs()
                )));
            }
            tokio::time::sleep(self.settings.poll).await;
        }
    }

    /// Done when the release's newest revision is deployed at the version
    /// with the values and every StatefulSet the chart renders exists; an
    /// upgrade that restores drifted objects is done once the release has
    /// a revision newer than the one they drifted from. Otherwise needed,
    /// saying whether that revision was left pending (so that the release
    /// is read once per step, not twice, when it was not).
    async fn before_upgrade(
        &self,
        ns: &str,
        release: &str,
        src: &ReleaseSource,
        repair: Option<&plimsoll_planner::plan::DriftRepair>,
    ) -> BeforeUpgrade {
        let Ok(releases) = crate::observe::helm_releases(&self.client, ns, Some(release)).await
        else {
            // Unknown: resolve_pending reads the release again.
            return BeforeUpgrade::Needed { pending: true };
        };
        let Some(r) = releases.into_iter().find(|r| r.name == release) else {
            return BeforeUpgrade::Needed { pending: false };
        };
        let needed = BeforeUpgrade::Needed {
            pending: r.status.starts_with("pending"),
        };
        if r.status != "deployed" || r.version != src.version || r.values != src.values {
            return needed;
        }
        if repair.is_some_and(|d| r.revision <= d.revision) {
            return needed;
        }
        let sts: Api<StatefulSet> = Api::namespaced(self.client.clone(), ns);
        for name in &src.statefulsets {
            match sts.get_opt(name).await {
                Ok(Some(s)) if s.metadata.deletion_timestamp.is_none() => {}
                _ => return needed,
            }
        }
        BeforeUpgrade::Done
    }

    async fn helm_upgrade(
        &self,
        ns: &str,
        release: &str,
        repair: Option<&plimsoll_planner::plan::DriftRepair>,
    ) -> Result<bool, StepError> {
        let src = self.sources.get(release).ok_or_else(|| {
            StepError::Invalid(format!("no rendered values for release {release}"))
        })?;
        let pending = match self.before_upgrade(ns, release, src, repair).await {
            BeforeUpgrade::Done => return Ok(false),
            BeforeUpgrade::Needed { pending } => pending,
        };
        let timeout = self.settings.helm_timeout;
        self.await_lease().await?;
        if pending {
            self.resolve_pending(ns, release).await?;
        }
        let mut cmd = tokio::process::Command::new(&self.settings.helm);
        // Positionals after `--`: never read as flags. No `--wait`: the
        // plan's `WaitForReady` after the upgrade is the wait (see
        // `wait_for_ready`); `--timeout` bounds the chart's hooks.
        cmd.args(["upgrade", "--install"])
            .args(self.settings.cluster.helm_flags())
            .args(["--namespace", ns, "--version", &src.version, "-f"])
            .arg(&src.values_file)
            .args(["--timeout", &format!("{}s", timeout.as_secs())]);
        // Helm 4 applies server-side: fields someone edited by hand are
        // theirs until taken back (Helm 3's three-way merge takes them
        // back by itself and has no such flag).
        if repair.is_some() && crate::helm::major_version(&self.settings.helm).await >= Some(4) {
            cmd.arg("--force-conflicts");
        }
        // helm's own schema check fetches and parses the cluster's OpenAPI
        // documents (half of an upgrade's CPU) only to learn that a server
        // that validates fields itself needs no check from it: there it
        // checks nothing, and the server refuses unknown fields of an
        // apply. Older servers (before 1.27) keep helm's check.
        if self.server_validates_fields().await {
            cmd.arg("--disable-openapi-validation");
        }
        cmd.args(["--", release, &src.chart])
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        // helm enforces --timeout itself; the margin covers a hung helm.
        let out = tokio::time::timeout(
            timeout + Duration::from_secs(60),
            self.helm_while_reporting(cmd.output()),
        )
        .await
        .map_err(|_| {
            StepError::Timeout(format!(
                "helm upgrade {release} did not finish within {}s",
                timeout.as_secs() + 60
            ))
        })??
        .map_err(|e| {
            StepError::Helm(format!("cannot run {}: {e}", self.settings.helm.display()))
        })?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = stderr.trim().lines().rev().take(5).collect();
            return Err(StepError::Helm(format!(
                "helm upgrade {release} failed ({}): {}",
                out.status,
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            )));
        }
        Ok(true)
    }

    /// Kubernetes 1.27 and later validate fields on the server (field
    /// validation is GA there). Unknown (the version unreadable): no.
    async fn server_validates_fields(&self) -> bool {
        *self
            .server_validates_fields
            .get_or_init(|| async {
                match self.client.apiserver_version().await {
                    Ok(v) => validates_fields(&v.major, &v.minor),
                    Err(_) => false,
                }
            })
            .await
    }

    /// Before `helm upgrade`: a newest revision left `pending-install`,
    /// `pending-upgrade` or `pending-rollback` makes Helm refuse every
    /// later operation ("another operation is in progress") for good. Under
    /// this sync's lease no helm of Plimsoll's is at work on the release
    /// (a helm of this process has ended or was killed before its step
    /// ended; a previous holder's was killed when its lease went
    /// unconfirmed, or died with it), so the revision was cut short: it is
    /// marked failed, as Helm itself records a failed operation, and the
    /// upgrade proceeds. Nothing is rolled back: the workloads stay as they
    /// are until the upgrade applies the desired state. The update is
    /// conditional on the Secret's resourceVersion: a helm that did touch
    /// it meanwhile wins, and the step fails to be retried.
    async fn resolve_pending(&self, ns: &str, release: &str) -> Result<(), StepError> {
        use k8s_openapi::api::core::v1::Secret;
        use kube::api::PostParams;
        let api: Api<Secret> = Api::namespaced(self.client.clone(), ns);
        let newest = crate::observe::newest_release_secrets(&self.client, ns, Some(release))
            .await
            .map_err(StepError::kube(format!("list release {release}")))?;
        let Some((revision, mut secret)) = newest.into_values().next() else {
            return Ok(());
        };
        let Some(field) = secret.data.as_ref().and_then(|d| d.get("release")) else {
            return Ok(());
        };
        let description =
            "Marked failed by Plimsoll: the helm that began this revision did not finish";
        let (rewritten, pending) = match crate::helm_release::mark_failed(&field.0, description) {
            Ok(Some(done)) => done,
            Ok(None) => return Ok(()),
            Err(e) => {
                return Err(StepError::Invalid(format!(
                    "release {release} revision {revision}: {e}"
                )))
            }
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        if let Some(d) = secret.data.as_mut() {
            d.insert("release".into(), k8s_openapi::ByteString(rewritten));
        }
        let labels = secret.metadata.labels.get_or_insert_with(Default::default);
        labels.insert("status".into(), "failed".into());
        labels.insert("modifiedAt".into(), now.to_string());
        let name = secret.metadata.name.clone().unwrap_or_default();
        self.await_lease().await?;
        // The resourceVersion read above makes the update conditional.
        api.replace(&name, &PostParams::default(), &secret)
            .await
            .map_err(StepError::kube(format!(
                "mark release {release} revision {revision} (left {}) failed",
                pending.status
            )))?;
        let line = format!(
            "  release {release}: revision {revision} was left {} (begun {}) by a helm that did not finish: marked failed, so that the upgrade can run",
            pending.status,
            if pending.begun.is_empty() { "at an unknown time" } else { &pending.begun }
        );
        self.say(&line);
        Ok(())
    }

    /// Runs `helm` (an upgrade) and meanwhile says what the step waits on:
    /// helm itself says nothing until it is done. Once the lease is not
    /// confirmed, helm is killed (dropped): a writer acts only while its
    /// lease is confirmed, and the next holder resolves the revision it
    /// leaves pending ([`Executor::resolve_pending`]).
    async fn helm_while_reporting<T>(
        &self,
        helm: impl std::future::Future<Output = T>,
    ) -> Result<T, StepError> {
        tokio::pin!(helm);
        let every = self.settings.poll.max(Duration::from_millis(500));
        let mut last_said: Option<(Instant, String)> = None;
        loop {
            tokio::select! {
                out = &mut helm => return Ok(out),
                _ = tokio::time::sleep(every) => {}
            }
            if self.lease.is_lost() {
                self.say("  the lease is another's: helm is stopped");
                return Err(StepError::LeaseLost);
            }
            if !self.lease.is_confirmed() {
                self.say("  the lease could not be renewed in time: helm is stopped before another syncer may take over");
                return Err(StepError::LeaseUnconfirmed);
            }
            let text = "helm upgrade: applying the chart and running its hooks".to_string();
            let due = last_said
                .as_ref()
                .is_none_or(|(at, said)| *said != text || at.elapsed() > Duration::from_secs(5));
            self.waiting(&format!("  {text}"), due);
            if due {
                last_said = Some((Instant::now(), text));
            }
        }
    }

    /// What keeps the StatefulSets, Deployments and DaemonSets named from
    /// being ready (empty: all ready).
    async fn workload_conditions(
        &self,
        ns: &str,
        statefulsets: &[String],
        deployments: &[String],
        daemonsets: &[String],
    ) -> Vec<String> {
        let mut waiting = Vec::new();
        let client = &self.client;
        unready_of(
            client,
            ns,
            "statefulset",
            statefulsets,
            statefulset_unready,
            &mut waiting,
        )
        .await;
        unready_of(
            client,
            ns,
            "deployment",
            deployments,
            deployment_unready,
            &mut waiting,
        )
        .await;
        unready_of(
            client,
            ns,
            "daemonset",
            daemonsets,
            daemonset_unready,
            &mut waiting,
        )
        .await;
        waiting
    }

    /// Until the StatefulSets, Deployments and DaemonSets are ready and
    /// every resource is current by its health rule; a resource that
    /// *failed* stops the wait at once with its own reason.
    ///
    /// This is the only wait on a release's workloads: `helm upgrade` runs
    /// without `--wait` (as the seeds' runbooks run it). Helm 4's default
    /// `--wait`, its `watcher`, gives up as soon as a resource reads Failed
    /// (since Helm 4.1.1), and kstatus reads a StatefulSet Failed while one
    /// of its pods crash-loops, as a stateful platform's pods do while
    /// their peers come up: the upgrade failed within seconds
    /// (`sync_cluster::a_pod_crash_looping_for_a_while_during_the_upgrade_is_waited_for`
    /// with it), and in CI it once ended an upgrade mid-rollout. Its
    /// `legacy` waiter does not, but polls every 2 s (the whole test
    /// suite: 2,324 s with it, 2,169 s with three more tests without).
    /// Here the workloads' own counts and revisions, and each custom
    /// resource's health rule, are read again soon, then every `poll`
    /// ([`ready_poll`]).
    async fn wait_for_ready(
        &self,
        ns: &str,
        workloads: [&[String]; 3],
        resources: &[ResourceRef],
        limit: Duration,
    ) -> Result<bool, StepError> {
        let [statefulsets, deployments, daemonsets] = workloads;
        let start = Instant::now();
        let mut first = true;
        let mut polls = 0u32;
        // What is waited on is said when it changes (the condition now),
        // and every 5 s.
        let mut last_report: Option<(Instant, String)> = None;
        loop {
            let mut waiting = self
                .workload_conditions(ns, statefulsets, deployments, daemonsets)
                .await;
            for r in resources {
                let what = format!("{}/{}", r.kind, r.name);
                match self.resource_health(r).await {
                    Ok(Health::Current) => {}
                    Ok(Health::InProgress(why)) => waiting.push(format!("{what}: {why}")),
                    Ok(Health::Failed(why)) => {
                        return Err(StepError::ResourceFailed(format!("{what} failed: {why}")))
                    }
                    Err(why) => waiting.push(format!("{what}: {why}")),
                }
            }
            if waiting.is_empty() {
                return Ok(!first);
            }
            first = false;
            self.between_polls(start, limit, || {
                format!(
                    "not ready within {}s: {}",
                    limit.as_secs(),
                    waiting.join("; ")
                )
            })?;
            let now = waiting.join("; ");
            let due = last_report
                .as_ref()
                .is_none_or(|(at, said)| *said != now || at.elapsed() > Duration::from_secs(5));
            self.waiting(&format!("  waiting: {now}"), due);
            if due {
                last_report = Some((Instant::now(), now));
            }
            // Right after an upgrade most workloads are ready within a
            // second: read again after 50, 100, 200, 400 ms, then every
            // `poll` (at 500 ms from the start the 110-release install
            // took 23.3 s instead of 13.7 s).
            polls += 1;
            tokio::time::sleep(ready_poll(polls, self.settings.poll)).await;
        }
    }
}

/// The pause before the `n`th read of a wait (from 1): 50 ms doubled each
/// time, at most `poll`.
pub fn ready_poll(n: u32, poll: Duration) -> Duration {
    Duration::from_millis(50)
        .saturating_mul(1u32 << n.saturating_sub(1).min(16))
        .min(poll)
}

/// Whether a server of this version validates fields itself: 1.27 and
/// later (a minor such as `32+` counts as 32).
pub fn validates_fields(major: &str, minor: &str) -> bool {
    let number = |s: &str| -> Option<u32> { s.trim_end_matches('+').parse().ok() };
    match (number(major), number(minor)) {
        (Some(1), Some(minor)) => minor >= 27,
        (Some(major), _) => major > 1,
        _ => false,
    }
}

/// Why a StatefulSet is not ready at its newest generation, if it is not.
pub fn statefulset_unready(s: &StatefulSet) -> Option<String> {
    let want = s.spec.as_ref().and_then(|x| x.replicas).unwrap_or(1);
    let st = s.status.clone().unwrap_or_default();
    let generation = s.metadata.generation.unwrap_or(0);
    if st.observed_generation.unwrap_or(0) < generation {
        return Some(format!(
            "generation {generation} not observed yet ({})",
            st.observed_generation.unwrap_or(0)
        ));
    }
    let ready = st.ready_replicas.unwrap_or(0);
    let updated = st.updated_replicas.unwrap_or(0);
    if ready < want || updated < want || st.replicas > want {
        return Some(format!("{ready}/{want} ready, {updated} updated"));
    }
    if st.update_revision.is_some() && st.current_revision != st.update_revision {
        return Some("rolling update in progress".to_string());
    }
    None
}

/// Why a Deployment is not ready at its newest generation, if it is not.
pub fn deployment_unready(d: &Deployment) -> Option<String> {
    let want = d.spec.as_ref().and_then(|x| x.replicas).unwrap_or(1);
    let st = d.status.clone().unwrap_or_default();
    let generation = d.metadata.generation.unwrap_or(0);
    if st.observed_generation.unwrap_or(0) < generation {
        return Some(format!("generation {generation} not observed yet"));
    }
    let (updated, available, total) = (
        st.updated_replicas.unwrap_or(0),
        st.available_replicas.unwrap_or(0),
        st.replicas.unwrap_or(0),
    );
    if updated < want || available < want || total > want {
        return Some(format!(
            "{available}/{want} available, {updated} updated, {total} total"
        ));
    }
    None
}

/// Adds to `waiting` why each of the workloads `names` of one kind is not
/// ready (missing, unreadable, or what `unready` says).
async fn unready_of<K>(
    client: &kube::Client,
    ns: &str,
    kind: &str,
    names: &[String],
    unready: fn(&K) -> Option<String>,
    waiting: &mut Vec<String>,
) where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    for name in names {
        match api.get_opt(name).await {
            Ok(Some(object)) => {
                if let Some(why) = unready(&object) {
                    waiting.push(format!("{kind}/{name}: {why}"));
                }
            }
            Ok(None) => waiting.push(format!("{kind}/{name}: missing")),
            Err(e) => waiting.push(format!("{kind}/{name}: {e}")),
        }
    }
}

/// Why a DaemonSet is not ready at its newest generation, if it is not:
/// each node that should run it runs its newest pod, available. With the
/// `OnDelete` strategy pods are replaced only when someone deletes them:
/// available is enough.
pub fn daemonset_unready(d: &DaemonSet) -> Option<String> {
    let st = d.status.clone().unwrap_or_default();
    let generation = d.metadata.generation.unwrap_or(0);
    if st.observed_generation.unwrap_or(0) < generation {
        return Some(format!("generation {generation} not observed yet"));
    }
    let want = st.desired_number_scheduled;
    let available = st.number_available.unwrap_or(0);
    let updated = st.updated_number_scheduled.unwrap_or(0);
    let on_delete = d
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.type_.as_deref())
        == Some("OnDelete");
    if available < want || (!on_delete && updated < want) {
        return Some(format!("{available}/{want} available, {updated} updated"));
    }
    None
}

fn pvc_request(p: &PersistentVolumeClaim) -> String {
    p.spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .map(|q| q.0.clone())
        .unwrap_or_default()
}

fn pvc_capacity(p: &PersistentVolumeClaim) -> String {
    p.status
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("storage"))
        .map(|q| q.0.clone())
        .unwrap_or_default()
}

/// The PVC's conditions (`Type=Status (Reason)`) and, where the API server
/// has them (v1.32: `RecoverVolumeExpansionFailure`, beta and on), its
/// resize statuses (`resize storage=ControllerResizeInProgress`).
fn pvc_conditions(p: &PersistentVolumeClaim) -> Vec<String> {
    let statuses = p
        .status
        .as_ref()
        .and_then(|s| s.allocated_resource_statuses.as_ref())
        .into_iter()
        .flatten()
        .map(|(resource, state)| format!("resize {resource}={state}"));
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .map(|cs| {
            cs.iter()
                .filter(|c| c.status == "True" || c.reason.is_some())
                .map(|c| {
                    format!(
                        "{}={}{}",
                        c.type_,
                        c.status,
                        c.reason
                            .as_deref()
                            .map(|r| format!(" ({r})"))
                            .unwrap_or_default()
                    )
                })
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
        .into_iter()
        .chain(statuses)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{daemonset_unready, ready_poll, validates_fields};
    use std::time::Duration;

    #[test]
    fn a_wait_reads_again_soon_then_every_poll() {
        let poll = Duration::from_millis(500);
        let pauses: Vec<u128> = (1..=6).map(|n| ready_poll(n, poll).as_millis()).collect();
        assert_eq!(pauses, [50, 100, 200, 400, 500, 500]);
        assert_eq!(ready_poll(u32::MAX, poll), poll);
    }
    use k8s_openapi::api::apps::v1::DaemonSet;

    fn daemonset(generation: i64, status: serde_json::Value, strategy: &str) -> DaemonSet {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "agent", "generation": generation},
            "spec": {"selector": {}, "template": {}, "updateStrategy": {"type": strategy}},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn a_daemonset_is_ready_when_every_node_runs_its_newest_pod_available() {
        let status = |observed: i64, available: i32, updated: i32| {
            serde_json::json!({"observedGeneration": observed, "desiredNumberScheduled": 3,
                "currentNumberScheduled": 3, "numberMisscheduled": 0, "numberReady": available,
                "numberAvailable": available, "updatedNumberScheduled": updated})
        };
        assert_eq!(
            daemonset_unready(&daemonset(2, status(2, 3, 3), "RollingUpdate")),
            None
        );
        assert_eq!(
            daemonset_unready(&daemonset(2, status(1, 3, 3), "RollingUpdate")).as_deref(),
            Some("generation 2 not observed yet")
        );
        assert_eq!(
            daemonset_unready(&daemonset(2, status(2, 3, 1), "RollingUpdate")).as_deref(),
            Some("3/3 available, 1 updated")
        );
        assert_eq!(
            daemonset_unready(&daemonset(2, status(2, 2, 3), "RollingUpdate")).as_deref(),
            Some("2/3 available, 3 updated")
        );
        // OnDelete: old pods stay until someone deletes them.
        assert_eq!(
            daemonset_unready(&daemonset(2, status(2, 3, 1), "OnDelete")),
            None
        );
    }

    #[test]
    fn servers_from_1_27_validate_fields_themselves() {
        assert!(!validates_fields("1", "20"));
        assert!(!validates_fields("1", "26+"));
        assert!(validates_fields("1", "27"));
        assert!(validates_fields("1", "32+"));
        assert!(validates_fields("2", "0"));
        assert!(!validates_fields("", ""));
        assert!(!validates_fields("1", "x"));
    }
}
