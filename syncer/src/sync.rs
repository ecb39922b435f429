//! One sync: take the stack's lease, resume the journal's unfinished plan
//! for the same desired state or plan afresh from the live state, and
//! execute it, journaled so that a killed sync resumes.
//!
//! In two phases, so that what a person approves is exactly what runs:
//! [`prepare`] takes the lease and decides what would run (nothing is
//! written but the lease); the caller may show it and ask; then
//! [`Prepared::execute`] runs exactly that, under the same lease.
//! [`sync_once`] does both without asking (the daemon, `sync --yes`).

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ObjectMeta, PostParams};
use plimsoll_planner::journal::Journal;
use plimsoll_planner::plan::{self, Plan, PlanOptions};

use crate::desired::DesiredState;
use crate::execute::{Executor, Progress, Report, RunEnd, Settings};
use crate::journal_store::{self, JournalLocation, StoreError};
use crate::lease::{self, LeaseCheck, LeaseGuard};

/// Settings of one sync besides the desired state.
#[derive(Clone, Debug)]
pub struct SyncOptions {
    pub journal_namespace: String,
    pub strict: bool,
    pub dry_run: bool,
    pub settings: Settings,
    pub lease_duration: Duration,
    pub wait_for_lease: Option<Duration>,
    /// Namespaces to observe; empty: those of the desired releases.
    pub namespaces: Vec<String>,
    /// `sync --plan FILE`: run exactly this reviewed plan, or nothing.
    pub saved: Option<plimsoll_planner::plan::SavedPlan>,
    /// Who holds the stack's lease while this syncs (default:
    /// [`holder_identity`]; the daemon's replicas name themselves).
    pub holder: String,
    /// What runs now, recorded for a status page.
    pub tracker: Option<crate::progress::RunTracker>,
}

impl SyncOptions {
    /// The namespaces to read: given ones, else those of the desired releases.
    pub fn namespaces_for(&self, desired: &DesiredState) -> Vec<String> {
        if self.namespaces.is_empty() {
            desired.namespaces()
        } else {
            self.namespaces.clone()
        }
    }

    pub fn plan_options(&self, desired: &DesiredState) -> PlanOptions {
        desired.plan_options(self.strict)
    }
}

/// How a sync ended (errors before any step are `Err`).
#[derive(Debug)]
pub enum SyncOutcome {
    NothingToDo,
    Refused(Plan),
    DryRun {
        plan_text: String,
    },
    /// The person asked did not approve; nothing was changed.
    Declined,
    /// The cluster changed between the approval and the execution, so the
    /// approved plan is no longer what a fresh plan says; nothing was
    /// changed.
    StateChanged {
        approved: Box<Plan>,
        now: Box<Plan>,
    },
    /// `sync --plan FILE`: the repository or the cluster moved since the
    /// plan was made; nothing was changed.
    SavedPlanOutdated {
        why: String,
    },
    Done {
        report: Report,
        resumed: bool,
        elapsed: Duration,
    },
    Stopped {
        report: Report,
    },
    /// A step (or the journal) failed; the report says which and why.
    Failed {
        report: Report,
    },
}

/// A stop request: a flag the executor checks at safe boundaries, and a
/// wake-up for whoever sleeps (the daemon between passes).
#[derive(Clone, Debug, Default)]
pub struct Stop {
    flag: Arc<AtomicBool>,
    notify: Arc<tokio::sync::Notify>,
}

impl Stop {
    pub fn request(&self) {
        self.flag.store(true, std::sync::atomic::Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    pub fn is_requested(&self) -> bool {
        self.flag.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The flag the executor reads.
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.flag.clone()
    }

    /// Resolves once a stop is requested.
    pub async fn requested(&self) {
        loop {
            let woken = self.notify.notified();
            if self.is_requested() {
                return;
            }
            woken.await;
        }
    }

    /// Requests a stop on SIGTERM or Ctrl-C (in a background task).
    pub fn on_signals(&self, said: impl FnOnce() + Send + 'static) {
        let stop = self.clone();
        tokio::spawn(async move {
            if stop_requested().await {
                said();
                stop.request();
            }
        });
    }
}

/// Resolves on SIGTERM or Ctrl-C (`false` if signals cannot be watched).
pub async fn stop_requested() -> bool {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        return false;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    true
}

/// This process as a lease holder: `HOST-PID`.
pub fn holder_identity() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "plimsoll".to_string());
    format!("{host}-{}", std::process::id())
}

/// Creates Plimsoll's namespace when it is missing (journal and lease live
/// there); a syncer without the right to create it needs it made for it.
pub async fn ensure_namespace(client: &kube::Client, name: &str) -> anyhow::Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    if api.get_opt(name).await.unwrap_or(None).is_some() {
        return Ok(());
    }
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..Default::default()
        },
        ..Default::default()
    };
    match api.create(&PostParams::default(), &ns).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot create namespace {name} for the journal")),
    }
}

/// Observes what the desired state touches (its custom resources' health
/// included) and plans against it.
pub async fn observe_and_plan(
    client: &kube::Client,
    desired: &DesiredState,
    opts: &SyncOptions,
) -> anyhow::Result<Plan> {
    let observed = observe_desired(client, desired, &opts.namespaces_for(desired)).await?;
    Ok(plan::plan(
        &desired.releases,
        &observed,
        &opts.plan_options(desired),
    ))
}

/// The observed state for `desired`: the namespaces' releases and
/// workloads, the declared patch targets, and the health of the custom
/// resources the releases render.
pub async fn observe_desired(
    client: &kube::Client,
    desired: &DesiredState,
    namespaces: &[String],
) -> anyhow::Result<plimsoll_planner::state::ObservedState> {
    let mut observed =
        crate::observe::observe(client, namespaces, &desired.patch_targets()).await?;
    let mut resources: Vec<plimsoll_planner::state::DesiredResource> = desired
        .releases
        .iter()
        .flat_map(|r| r.custom_resources.iter().cloned())
        .collect();
    // Preconditions: read as they are (no rendered object to compare).
    for r in desired.releases.iter().flat_map(|r| &r.requires) {
        if !resources.iter().any(|c| c.target == *r) {
            resources.push(plimsoll_planner::state::DesiredResource {
                target: r.clone(),
                object: serde_json::Value::Null,
            });
        }
    }
    observed.health = crate::observe::observe_health(client, &desired.health, &resources).await?;
    Ok(observed)
}

/// What [`prepare`] decided (one value per sync: its size does not matter).
#[allow(clippy::large_enum_variant)]
pub enum Preparation {
    /// Nothing will run (nothing to do, refused, a dry run).
    Finished(SyncOutcome),
    Ready(Prepared),
}

/// A sync ready to run: the lease is held, the journal says what runs.
pub struct Prepared {
    lease: Option<LeaseGuard>,
    journal: Journal,
    /// The fresh plan the journal was made from.
    plan: Plan,
    resumed: bool,
    journal_at: JournalLocation,
    start: Instant,
}

/// Decides what the sync would run (a fresh plan from the live state,
/// which continues an interrupted sync when it agrees with its journal)
/// and takes the lease for it. A refused plan, nothing to do or a dry run
/// write nothing to the cluster, not even the lease.
pub async fn prepare(
    client: &kube::Client,
    desired: &DesiredState,
    opts: &SyncOptions,
    progress: &Progress,
) -> anyhow::Result<Preparation> {
    let start = Instant::now();
    let journal_at = JournalLocation::for_stack(&opts.journal_namespace, &desired.stack_name);
    if let Decision::Outcome(outcome) = decide(client, desired, opts, None, &journal_at).await? {
        return Ok(Preparation::Finished(outcome));
    }
    ensure_namespace(client, &opts.journal_namespace).await?;
    let lease = lease::acquire(
        client,
        &opts.journal_namespace,
        &desired.stack_name,
        &opts.holder,
        opts.lease_duration,
        opts.wait_for_lease,
    )
    .await?;
    // Again under the lease: another syncer may have run meanwhile.
    match decide(client, desired, opts, Some(progress), &journal_at).await {
        Ok(Decision::Outcome(outcome)) => {
            lease.release().await;
            Ok(Preparation::Finished(outcome))
        }
        Ok(Decision::Close(mut journal)) => {
            journal.status = plimsoll_planner::journal::JournalStatus::Succeeded;
            let saved = if lease.check().is_confirmed() {
                journal_store::save(client, &journal_at, &journal).await
            } else {
                Ok(())
            };
            lease.release().await;
            saved?;
            Ok(Preparation::Finished(SyncOutcome::NothingToDo))
        }
        Ok(Decision::Run {
            journal,
            plan,
            resumed,
        }) => Ok(Preparation::Ready(Prepared {
            lease: Some(lease),
            journal,
            plan: *plan,
            resumed,
            journal_at,
            start,
        })),
        Err(e) => {
            lease.release().await;
            Err(e)
        }
    }
}

enum Decision {
    Outcome(SyncOutcome),
    /// Nothing to do, but the journal holds an interrupted sync of this
    /// desired state: it is recorded as complete (under the lease), so
    /// that no journal stays `running` for work that is done.
    Close(Box<Journal>),
    Run {
        journal: Journal,
        plan: Box<Plan>,
        resumed: bool,
    },
}

/// A fresh plan from the live state, always: the journal is a record, not
/// a command channel. An interrupted sync of the same desired state is
/// resumed when every step the fresh plan wants is one of the journal's
/// remaining steps; otherwise (the cluster moved, the journal was edited
/// or damaged) the fresh plan replaces it. Refusals are checked afresh.
async fn decide(
    client: &kube::Client,
    desired: &DesiredState,
    opts: &SyncOptions,
    progress: Option<&Progress>,
    journal_at: &JournalLocation,
) -> anyhow::Result<Decision> {
    let say = |line: &str| {
        if let Some(p) = progress {
            p(line)
        }
    };
    let stored = match journal_store::load(client, journal_at).await {
        Ok(j) => j,
        Err(StoreError::Journal(e)) => {
            say(&format!(
                "the stack's journal is damaged ({e}); a fresh plan replaces it"
            ));
            None
        }
        Err(e) => return Err(e.into()),
    };
    // An interrupted sync: of this desired state it may be resumed; of
    // another, it is superseded once the cluster needs nothing more.
    let unfinished = stored.filter(|j| {
        j.status != plimsoll_planner::journal::JournalStatus::Succeeded && !j.is_complete()
    });
    let previous = unfinished.clone().filter(|j| j.resumes(&desired.digest));
    let observed = observe_desired(client, desired, &opts.namespaces_for(desired)).await?;
    let plan = plan::plan(&desired.releases, &observed, &opts.plan_options(desired));
    if let Some(saved) = &opts.saved {
        if let Some(why) = saved_plan_moved(saved, desired, &observed, &plan) {
            return Ok(Decision::Outcome(SyncOutcome::SavedPlanOutdated { why }));
        }
    }
    if !plan.refusals.is_empty() {
        return Ok(Decision::Outcome(SyncOutcome::Refused(plan)));
    }
    if !plan.has_changes() {
        if let Some(mut j) = unfinished {
            j.message = if previous.is_some() {
                say("the interrupted sync's remaining steps are done already");
                "its remaining steps were found done already".to_string()
            } else {
                // A later commit's desired state is live: the interrupted
                // sync is not to be finished any more.
                format!(
                    "superseded: the cluster is at the desired state of {} with nothing left to do",
                    desired.revision.as_deref().unwrap_or("the working tree")
                )
            };
            // A dry run writes nothing, the journal included.
            if !opts.dry_run {
                return Ok(Decision::Close(Box::new(j)));
            }
        }
        return Ok(Decision::Outcome(SyncOutcome::NothingToDo));
    }
    let journal = Journal::new(&plan, &desired.digest, desired.revision.as_deref());
    let resumed = match &previous {
        None => false,
        Some(j) if !j.is_intact() => {
            say(&format!(
                "the journal of plan {} does not match its digest (edited by hand?); a fresh plan replaces it",
                short(&j.plan_digest)
            ));
            false
        }
        Some(j) => {
            // What a drift repair adds to an upgrade is not part of the
            // comparison: an interrupted sync leaves objects missing (the
            // StatefulSets it orphan-deleted), and the upgrade it resumes
            // re-creates them.
            let comparable = |v: &serde_json::Value| {
                let mut v = v.clone();
                if let Some(o) = v.as_object_mut() {
                    o.remove("restores");
                }
                v
            };
            let remaining: Vec<serde_json::Value> = j
                .steps
                .iter()
                .filter(|s| !j.completed.contains(&s.id))
                .map(|s| comparable(&s.step))
                .collect();
            let new: Vec<&str> = journal
                .steps
                .iter()
                .filter(|s| !remaining.contains(&comparable(&s.step)))
                .map(|s| s.id.as_str())
                .collect();
            if new.is_empty() {
                say(&format!(
                    "resuming plan {}: {} of its {} steps done; a fresh plan wants the {} remaining",
                    short(&j.plan_digest),
                    j.steps.len() - remaining.len(),
                    j.steps.len(),
                    journal.steps.len()
                ));
                true
            } else {
                say(&format!(
                    "the interrupted plan {} no longer matches the cluster (a fresh plan also wants {}); planning afresh",
                    short(&j.plan_digest),
                    new.join(", ")
                ));
                false
            }
        }
    };
    if opts.dry_run {
        return Ok(Decision::Outcome(SyncOutcome::DryRun {
            plan_text: plan::to_text(&plan),
        }));
    }
    Ok(Decision::Run {
        journal,
        plan: Box::new(plan),
        resumed,
    })
}

/// Why a saved plan no longer applies, if it does not: the repository's
/// desired state or the cluster moved since it was made (checked before
/// anything is written, and again under the lease).
fn saved_plan_moved(
    saved: &plimsoll_planner::plan::SavedPlan,
    desired: &DesiredState,
    observed: &plimsoll_planner::state::ObservedState,
    fresh: &Plan,
) -> Option<String> {
    if saved.desired_digest != desired.digest {
        return Some(format!(
            "the repository's desired state is not the one planned (desired-state digest {}, planned {})",
            short(&desired.digest),
            short(&saved.desired_digest)
        ));
    }
    let now = plimsoll_planner::plan::observed_digest(observed);
    if saved.observed_digest != now {
        return Some(format!(
            "the cluster changed since the plan was made (observed digest {}, planned from {})",
            short(&now),
            short(&saved.observed_digest)
        ));
    }
    // Same inputs, same planner: the plans agree unless the planner
    // changed (another Plimsoll version); compared as written.
    let written = |p: &Plan| serde_json::to_value(p).ok();
    if written(fresh) != written(&saved.plan) {
        return Some("a fresh plan from the same inputs differs from the saved one (planned by another Plimsoll version?)".to_string());
    }
    None
}

fn short(digest: &str) -> &str {
    &digest[..12.min(digest.len())]
}

impl Prepared {
    /// The fresh plan that will run.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The journal that will run (its remaining steps).
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    pub fn resumes(&self) -> bool {
        self.resumed
    }

    /// Gives the lease back; nothing was changed.
    pub async fn abandon(self) {
        if let Some(l) = self.lease {
            l.release().await;
        }
    }

    /// Runs exactly the prepared journal. With `recheck` (a person
    /// approved a fresh plan some time ago), the cluster is read again
    /// first and the sync stops, changing nothing, if a fresh plan now
    /// differs from the approved one.
    pub async fn execute(
        mut self,
        client: &kube::Client,
        desired: &DesiredState,
        opts: &SyncOptions,
        stop: Arc<AtomicBool>,
        progress: Progress,
        recheck: bool,
    ) -> anyhow::Result<SyncOutcome> {
        let outcome = self
            .run(client, desired, opts, stop, progress, recheck)
            .await;
        if let Some(l) = self.lease.take() {
            l.release().await;
        }
        outcome
    }

    async fn run(
        &mut self,
        client: &kube::Client,
        desired: &DesiredState,
        opts: &SyncOptions,
        stop: Arc<AtomicBool>,
        progress: Progress,
        recheck: bool,
    ) -> anyhow::Result<SyncOutcome> {
        if recheck {
            let approved = &self.plan;
            let now = observe_and_plan(client, desired, opts).await?;
            if now.releases != approved.releases || now.refusals != approved.refusals {
                return Ok(SyncOutcome::StateChanged {
                    approved: Box::new(approved.clone()),
                    now: Box::new(now),
                });
            }
        }
        let lease = self.lease.as_ref();
        let executor = Executor {
            client: client.clone(),
            settings: opts.settings.clone(),
            sources: desired.sources.clone(),
            patches: desired
                .releases
                .iter()
                .flat_map(|r| r.patches.iter().cloned())
                .collect(),
            redactor: desired.redactor.clone(),
            health: desired.health.clone(),
            custom_resources: desired
                .releases
                .iter()
                .flat_map(|r| r.custom_resources.iter().cloned())
                .collect(),
            scrubber: desired.scrubber.clone(),
            journal_at: self.journal_at.clone(),
            stop,
            lease: lease.map_or_else(LeaseCheck::unleased, |l| l.check()),
            progress,
            tracker: opts.tracker.clone(),
            server_validates_fields: Default::default(),
        };
        let report = executor.run(&mut self.journal).await;
        Ok(match report.end {
            RunEnd::Completed => SyncOutcome::Done {
                report,
                resumed: self.resumed,
                elapsed: self.start.elapsed(),
            },
            RunEnd::Stopped { .. } => SyncOutcome::Stopped { report },
            RunEnd::Failed { .. } => SyncOutcome::Failed { report },
        })
    }
}

/// Plans `desired` against the live cluster (or resumes the journal's
/// unfinished plan for the same desired state) and executes it.
pub async fn sync_once(
    client: &kube::Client,
    desired: &DesiredState,
    opts: &SyncOptions,
    stop: Arc<AtomicBool>,
    progress: Progress,
) -> anyhow::Result<SyncOutcome> {
    match prepare(client, desired, opts, &progress).await? {
        Preparation::Finished(outcome) => Ok(outcome),
        Preparation::Ready(p) => {
            p.execute(client, desired, opts, stop, progress, false)
                .await
        }
    }
}
