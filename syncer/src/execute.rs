//! The executor: performs a plan's steps in order against the cluster,
//! recording each completed step in the stack's journal. **I/O edge**, with
//! [`crate::observe`] the only other module that talks to Kubernetes.
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

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Secret};
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};

use crate::journal::{step_kind, Journal, JournalError, JournalStatus};
use crate::plan::Step;
use crate::state::quantity_bytes;

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
    pub expansion_timeout: Duration,
    pub helm_timeout: Duration,
    pub ready_timeout: Duration,
    pub poll: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            helm: PathBuf::from("helm"),
            expansion_timeout: Duration::from_secs(600),
            helm_timeout: Duration::from_secs(600),
            ready_timeout: Duration::from_secs(600),
            poll: Duration::from_millis(500),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("stopped at step {step} of release {release}: {reason}")]
    Step {
        step: String,
        release: String,
        reason: String,
    },
    #[error("journal: {0}")]
    Journal(#[from] JournalError),
    #[error("kubernetes: {0}")]
    Kube(#[from] kube::Error),
}

/// How a sync ended when it did not fail.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Steps that acted, by kind.
    pub executed: BTreeMap<String, u32>,
    /// Steps whose precondition showed them already done.
    pub skipped: u32,
    /// Set when a stop request ended the sync early: the next step.
    pub stopped_before: Option<String>,
    /// Failed steps by kind (at most one; for metrics).
    pub failed: BTreeMap<String, u32>,
}

/// Where the journal lives.
#[derive(Clone, Debug)]
pub struct JournalLocation {
    pub namespace: String,
    pub name: String,
}

impl JournalLocation {
    pub fn for_stack(namespace: &str, stack: &str) -> JournalLocation {
        JournalLocation {
            namespace: namespace.to_string(),
            name: format!("plimsoll-journal-{stack}"),
        }
    }
}

/// Reads the stack's journal; `None` when no sync ran yet.
pub async fn load_journal(
    client: &kube::Client,
    at: &JournalLocation,
) -> Result<Option<Journal>, ExecError> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &at.namespace);
    match api.get_opt(&at.name).await? {
        None => Ok(None),
        Some(cm) => Ok(Some(Journal::from_data(&cm.data.unwrap_or_default())?)),
    }
}

/// Whether an error may go away on its own (the API server restarting,
/// overloaded, or a conflicting write).
fn transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => s.code >= 500 || s.code == 429 || s.code == 409,
        _ => true,
    }
}

/// Writes the journal (create or replace), retrying for up to a minute
/// while the API server is unavailable: a step that is done must not be
/// forgotten because of a restart.
pub async fn save_journal(
    client: &kube::Client,
    at: &JournalLocation,
    journal: &Journal,
) -> Result<(), ExecError> {
    let start = Instant::now();
    loop {
        match save_journal_once(client, at, journal).await {
            Err(ExecError::Kube(e))
                if transient(&e) && start.elapsed() < Duration::from_secs(60) =>
            {
                tracing::warn!("journal not saved yet ({e}); retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            other => return other,
        }
    }
}

async fn save_journal_once(
    client: &kube::Client,
    at: &JournalLocation,
    journal: &Journal,
) -> Result<(), ExecError> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &at.namespace);
    let data = journal.to_data();
    match api.get_opt(&at.name).await? {
        None => {
            let cm = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(at.name.clone()),
                    labels: Some(BTreeMap::from([(
                        "app.kubernetes.io/managed-by".to_string(),
                        "plimsoll".to_string(),
                    )])),
                    ..Default::default()
                },
                data: Some(data),
                ..Default::default()
            };
            api.create(&PostParams::default(), &cm).await?;
        }
        Some(mut cm) => {
            cm.data = Some(data);
            api.replace(&at.name, &PostParams::default(), &cm).await?;
        }
    }
    Ok(())
}

/// What a waiting step returns when a stop request interrupts it.
const STOP_REQUESTED: &str = "stop requested";

/// Performs plans against one cluster.
pub struct Executor {
    pub client: kube::Client,
    pub settings: Settings,
    pub sources: BTreeMap<String, ReleaseSource>,
    pub journal_at: JournalLocation,
    /// Set by a stop request (SIGTERM); honoured at the next safe boundary.
    pub stop: Arc<AtomicBool>,
    /// Set when the stack's lease is lost: stop before the next step.
    pub lease_lost: Arc<AtomicBool>,
    /// Set while the lease is unconfirmed (API server unreachable): wait
    /// before the next step.
    pub lease_stale: Arc<AtomicBool>,
    /// Prints progress (one line per event).
    pub progress: Arc<dyn Fn(&str) + Send + Sync>,
}

/// A fault-injection hook for the resumption tests: the process aborts (as
/// if killed) right after the journal records the last of the first run of
/// steps of this kind. Read from `PLIMSOLL_FAULT_ABORT_AFTER`.
fn abort_after() -> Option<String> {
    std::env::var("PLIMSOLL_FAULT_ABORT_AFTER")
        .ok()
        .filter(|s| !s.is_empty())
}

impl Executor {
    fn say(&self, line: &str) {
        (self.progress)(line);
        tracing::info!("{line}");
    }

    /// Runs the journal's remaining steps in order, saving the journal
    /// after each.
    pub async fn run(&self, journal: &mut Journal) -> Result<Report, ExecError> {
        let mut report = Report::default();
        // A StatefulSet orphan-deleted whose upgrade has not run yet.
        let mut orphaned: Option<String> = None;
        let abort_kind = abort_after();
        journal.status = JournalStatus::Running;
        save_journal(&self.client, &self.journal_at, journal).await?;
        let total = journal.steps.len();
        while let Some(js) = journal.next_step().cloned() {
            let step: Step = serde_json::from_value(js.step.clone())
                .map_err(|e| JournalError::from_message(format!("step {}: {e}", js.id)))?;
            if orphaned.is_none() && self.stop.load(Ordering::SeqCst) {
                self.say(&format!("stop requested: stopping before {}", js.id));
                report.stopped_before = Some(js.id.clone());
                return Ok(report);
            }
            let paused = Instant::now();
            while self.lease_stale.load(Ordering::SeqCst)
                && !self.lease_lost.load(Ordering::SeqCst)
                && paused.elapsed() < self.settings.ready_timeout
            {
                if paused.elapsed() < self.settings.poll {
                    self.say("  the lease is unconfirmed (API server unreachable?); waiting before the next step");
                }
                tokio::time::sleep(self.settings.poll).await;
            }
            if self.lease_stale.load(Ordering::SeqCst) && !self.lease_lost.load(Ordering::SeqCst) {
                let reason = "the stack's lease could not be renewed".to_string();
                return Err(self.fail(journal, &js.id, &js.release, reason).await);
            }
            if self.lease_lost.load(Ordering::SeqCst) {
                return Err(self
                    .fail(
                        journal,
                        &js.id,
                        &js.release,
                        "the stack's lease was lost to another syncer".into(),
                    )
                    .await);
            }
            let done = journal.completed.len() + 1;
            self.say(&format!("[{done}/{total}] {}", step.describe()));
            match self.perform(&step).await {
                Ok(acted) => {
                    if acted {
                        *report
                            .executed
                            .entry(step_kind(&step).to_string())
                            .or_default() += 1;
                    } else {
                        report.skipped += 1;
                        self.say("  already done");
                    }
                }
                // A wait interrupted by a stop request: nothing is half done.
                Err(reason) if reason == STOP_REQUESTED && orphaned.is_none() => {
                    self.say(&format!(
                        "stop requested: stopping before {} completes",
                        js.id
                    ));
                    report.stopped_before = Some(js.id.clone());
                    return Ok(report);
                }
                Err(reason) => {
                    *report
                        .failed
                        .entry(step_kind(&step).to_string())
                        .or_default() += 1;
                    return Err(self.fail(journal, &js.id, &js.release, reason).await);
                }
            }
            match &step {
                Step::RecreateStatefulSet { statefulset, .. } => {
                    orphaned = Some(statefulset.clone())
                }
                Step::HelmUpgrade { .. } => orphaned = None,
                _ => {}
            }
            journal.completed.push(js.id.clone());
            save_journal(&self.client, &self.journal_at, journal).await?;
            if let Some(kind) = &abort_kind {
                let next_kind = journal
                    .next_step()
                    .and_then(|n| serde_json::from_value::<Step>(n.step.clone()).ok())
                    .map(|s| step_kind(&s));
                if kind == step_kind(&step) && next_kind != Some(kind.as_str()) {
                    eprintln!("PLIMSOLL_FAULT_ABORT_AFTER={kind}: aborting");
                    std::process::abort();
                }
            }
        }
        journal.status = JournalStatus::Succeeded;
        journal.message.clear();
        save_journal(&self.client, &self.journal_at, journal).await?;
        Ok(report)
    }

    async fn fail(
        &self,
        journal: &mut Journal,
        id: &str,
        release: &str,
        reason: String,
    ) -> ExecError {
        journal.status = JournalStatus::Failed;
        journal.message = format!("{id}: {reason}");
        if let Err(e) = save_journal(&self.client, &self.journal_at, journal).await {
            tracing::warn!("cannot record the failure in the journal: {e}");
        }
        ExecError::Step {
            step: id.to_string(),
            release: release.to_string(),
            reason,
        }
    }

    /// Performs one step; `Ok(false)` when its precondition shows it done.
    async fn perform(&self, step: &Step) -> Result<bool, String> {
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
                namespace, release, ..
            } => self.helm_upgrade(namespace, release).await,
            Step::WaitForReady {
                namespace,
                statefulsets,
                deployments,
                ..
            } => {
                self.wait_for_ready(namespace, statefulsets, deployments)
                    .await
            }
        }
    }

    async fn expand_pvc(&self, ns: &str, name: &str, to: &str) -> Result<bool, String> {
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), ns);
        let pvc = api
            .get(name)
            .await
            .map_err(|e| format!("PVC {name}: {e}"))?;
        let requested = pvc_request(&pvc);
        let (have, want) = (
            quantity_bytes(&requested),
            quantity_bytes(to).ok_or_else(|| format!("bad quantity {to}"))?,
        );
        if have.is_some_and(|h| h >= want) {
            return Ok(false);
        }
        let body = serde_json::json!({"spec": {"resources": {"requests": {"storage": to}}}});
        api.patch(name, &PatchParams::default(), &Patch::Merge(&body))
            .await
            .map_err(|e| format!("PVC {name}: {e}"))?;
        Ok(true)
    }

    async fn wait_for_expansion(&self, ns: &str, name: &str, to: &str) -> Result<bool, String> {
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), ns);
        let want = quantity_bytes(to).ok_or_else(|| format!("bad quantity {to}"))?;
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
            if let Some(failed) = conditions.iter().find(|c| c.contains("VolumeResizeFailed")) {
                return Err(format!(
                    "the storage driver failed to expand PVC {name} to {to} ({failed}); capacity is {capacity}"
                ));
            }
            if self.stop.load(Ordering::SeqCst) {
                return Err(STOP_REQUESTED.to_string());
            }
            if start.elapsed() > self.settings.expansion_timeout {
                return Err(format!(
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
                ));
            }
            if last_report.elapsed() > Duration::from_secs(5) {
                self.say(&format!(
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
                ));
                last_report = Instant::now();
            }
            tokio::time::sleep(self.settings.poll).await;
        }
    }

    async fn patch_resource(
        &self,
        target: &crate::state::ResourceRef,
        operations: &serde_json::Value,
    ) -> Result<bool, String> {
        let api = crate::observe::api_for(&self.client, target)
            .await
            .map_err(|e| format!("{target}: {e}"))?
            .ok_or_else(|| format!("{target}: the kind is not served by the cluster"))?;
        let object = api
            .get(&target.name)
            .await
            .map_err(|e| format!("{target}: {e}"))?;
        let ops: json_patch::Patch =
            serde_json::from_value(operations.clone()).map_err(|e| e.to_string())?;
        let before = serde_json::to_value(&object).map_err(|e| e.to_string())?;
        let mut after = before.clone();
        json_patch::patch(&mut after, &ops).map_err(|e| format!("{target}: {e}"))?;
        if after == before {
            return Ok(false);
        }
        api.patch(
            &target.name,
            &PatchParams::default(),
            &Patch::<()>::Json(ops),
        )
        .await
        .map_err(|e| format!("{target}: {e}"))?;
        Ok(true)
    }

    async fn orphan_delete(&self, ns: &str, name: &str, uid: &str) -> Result<bool, String> {
        let api: Api<StatefulSet> = Api::namespaced(self.client.clone(), ns);
        let Some(live) = api.get_opt(name).await.map_err(|e| e.to_string())? else {
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
            match api.delete(name, &params).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => return Ok(false),
                Err(e) => return Err(format!("StatefulSet {name}: {e}")),
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
                return Err(format!(
                    "StatefulSet {name} was not removed within {}s (orphan finalizer still pending?)",
                    self.settings.ready_timeout.as_secs()
                ));
            }
            tokio::time::sleep(self.settings.poll).await;
        }
    }

    /// Whether the newest deployed revision already has this chart version
    /// and values, and every StatefulSet the chart renders exists.
    async fn upgrade_done(&self, ns: &str, release: &str, src: &ReleaseSource) -> bool {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), ns);
        let Ok(list) = secrets
            .list(&ListParams::default().labels(&format!("owner=helm,name={release}")))
            .await
        else {
            return false;
        };
        let newest = list
            .into_iter()
            .filter_map(|s| {
                let field = s.data.as_ref()?.get("release")?.0.clone();
                crate::helm_release::decode_release(&field, ns).ok()
            })
            .max_by_key(|r| r.revision);
        let Some(r) = newest else { return false };
        if r.status != "deployed" || r.version != src.version || r.values != src.values {
            return false;
        }
        let sts: Api<StatefulSet> = Api::namespaced(self.client.clone(), ns);
        for name in &src.statefulsets {
            match sts.get_opt(name).await {
                Ok(Some(s)) if s.metadata.deletion_timestamp.is_none() => {}
                _ => return false,
            }
        }
        true
    }

    async fn helm_upgrade(&self, ns: &str, release: &str) -> Result<bool, String> {
        let src = self
            .sources
            .get(release)
            .ok_or_else(|| format!("no rendered values for release {release}"))?;
        if self.upgrade_done(ns, release, src).await {
            return Ok(false);
        }
        let timeout = self.settings.helm_timeout;
        let mut cmd = tokio::process::Command::new(&self.settings.helm);
        cmd.args(["upgrade", "--install", release, &src.chart])
            .args(["--namespace", ns, "--version", &src.version, "-f"])
            .arg(&src.values_file)
            .args(["--wait", "--timeout", &format!("{}s", timeout.as_secs())])
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        // helm enforces --timeout itself; the margin covers a hung helm.
        let out = tokio::time::timeout(timeout + Duration::from_secs(60), cmd.output())
            .await
            .map_err(|_| {
                format!(
                    "helm upgrade {release} did not finish within {}s",
                    timeout.as_secs() + 60
                )
            })?
            .map_err(|e| format!("cannot run {}: {e}", self.settings.helm.display()))?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = stderr.trim().lines().rev().take(5).collect();
            return Err(format!(
                "helm upgrade {release} failed ({}): {}",
                out.status,
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            ));
        }
        Ok(true)
    }

    async fn wait_for_ready(
        &self,
        ns: &str,
        statefulsets: &[String],
        deployments: &[String],
    ) -> Result<bool, String> {
        let sts_api: Api<StatefulSet> = Api::namespaced(self.client.clone(), ns);
        let dep_api: Api<Deployment> = Api::namespaced(self.client.clone(), ns);
        let start = Instant::now();
        let mut first = true;
        let mut last_report = Instant::now();
        loop {
            let mut waiting = Vec::new();
            for name in statefulsets {
                match sts_api.get_opt(name).await {
                    Ok(Some(s)) => {
                        if let Some(why) = statefulset_unready(&s) {
                            waiting.push(format!("statefulset/{name}: {why}"));
                        }
                    }
                    Ok(None) => waiting.push(format!("statefulset/{name}: missing")),
                    Err(e) => waiting.push(format!("statefulset/{name}: {e}")),
                }
            }
            for name in deployments {
                match dep_api.get_opt(name).await {
                    Ok(Some(d)) => {
                        if let Some(why) = deployment_unready(&d) {
                            waiting.push(format!("deployment/{name}: {why}"));
                        }
                    }
                    Ok(None) => waiting.push(format!("deployment/{name}: missing")),
                    Err(e) => waiting.push(format!("deployment/{name}: {e}")),
                }
            }
            if waiting.is_empty() {
                return Ok(!first);
            }
            first = false;
            if self.stop.load(Ordering::SeqCst) {
                return Err(STOP_REQUESTED.to_string());
            }
            if start.elapsed() > self.settings.ready_timeout {
                return Err(format!(
                    "not ready within {}s: {}",
                    self.settings.ready_timeout.as_secs(),
                    waiting.join("; ")
                ));
            }
            if last_report.elapsed() > Duration::from_secs(5) {
                self.say(&format!("  waiting: {}", waiting.join("; ")));
                last_report = Instant::now();
            }
            tokio::time::sleep(self.settings.poll).await;
        }
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

fn pvc_conditions(p: &PersistentVolumeClaim) -> Vec<String> {
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
                .collect()
        })
        .unwrap_or_default()
}
