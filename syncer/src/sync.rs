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
use crate::journal_store::{self, JournalLocation};
use crate::lease::{self, LeaseGuard};

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
        PlanOptions {
            strict: self.strict,
            catalogs: desired.catalogs.clone(),
        }
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
async fn ensure_namespace(client: &kube::Client, name: &str) -> anyhow::Result<()> {
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

/// Observes what the desired state touches and plans against it.
pub async fn observe_and_plan(
    client: &kube::Client,
    desired: &DesiredState,
    opts: &SyncOptions,
) -> anyhow::Result<Plan> {
    let observed = crate::observe::observe(
        client,
        &opts.namespaces_for(desired),
        &desired.patch_targets(),
    )
    .await?;
    Ok(plan::plan(
        &desired.releases,
        &observed,
        &opts.plan_options(desired),
    ))
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
    /// The fresh plan the journal was made from; `None` when resuming.
    plan: Option<Plan>,
    resumed: bool,
    journal_at: JournalLocation,
    start: Instant,
}

/// Takes the lease and decides what the sync would run: the journal's
/// unfinished plan for the same desired state, or a fresh plan.
pub async fn prepare(
    client: &kube::Client,
    desired: &DesiredState,
    opts: &SyncOptions,
    progress: &Progress,
) -> anyhow::Result<Preparation> {
    let start = Instant::now();
    let journal_at = JournalLocation::for_stack(&opts.journal_namespace, &desired.stack_name);
    let lease = if opts.dry_run {
        None
    } else {
        ensure_namespace(client, &opts.journal_namespace).await?;
        Some(
            lease::acquire(
                client,
                &opts.journal_namespace,
                &desired.stack_name,
                &holder_identity(),
                opts.lease_duration,
                opts.wait_for_lease,
            )
            .await?,
        )
    };
    let decided = decide(client, desired, opts, progress, &journal_at).await;
    let release = |lease: Option<LeaseGuard>| async {
        if let Some(l) = lease {
            l.release().await;
        }
    };
    match decided {
        Ok(Decision::Outcome(outcome)) => {
            release(lease).await;
            Ok(Preparation::Finished(outcome))
        }
        Ok(Decision::Run {
            journal,
            plan,
            resumed,
        }) => Ok(Preparation::Ready(Prepared {
            lease,
            journal,
            plan,
            resumed,
            journal_at,
            start,
        })),
        Err(e) => {
            release(lease).await;
            Err(e)
        }
    }
}

enum Decision {
    Outcome(SyncOutcome),
    Run {
        journal: Journal,
        plan: Option<Plan>,
        resumed: bool,
    },
}

async fn decide(
    client: &kube::Client,
    desired: &DesiredState,
    opts: &SyncOptions,
    progress: &Progress,
    journal_at: &JournalLocation,
) -> anyhow::Result<Decision> {
    let previous = journal_store::load(client, journal_at).await?;
    if let Some(j) = previous.filter(|j| j.resumes(&desired.digest)) {
        if opts.dry_run {
            let mut text =
                String::from("An interrupted sync of this desired state would resume:\n");
            for s in j.steps.iter().filter(|s| !j.completed.contains(&s.id)) {
                text.push_str(&format!("  {}\n", s.id));
            }
            return Ok(Decision::Outcome(SyncOutcome::DryRun { plan_text: text }));
        }
        progress(&format!(
            "resuming plan {} at {} ({} of {} steps done)",
            &j.plan_digest[..12],
            j.next_step().map(|s| s.id.as_str()).unwrap_or("the end"),
            j.completed.len(),
            j.steps.len()
        ));
        return Ok(Decision::Run {
            journal: j,
            plan: None,
            resumed: true,
        });
    }
    let plan = observe_and_plan(client, desired, opts).await?;
    if !plan.refusals.is_empty() {
        return Ok(Decision::Outcome(SyncOutcome::Refused(plan)));
    }
    if !plan.has_changes() {
        return Ok(Decision::Outcome(SyncOutcome::NothingToDo));
    }
    if opts.dry_run {
        return Ok(Decision::Outcome(SyncOutcome::DryRun {
            plan_text: plan::to_text(&plan),
        }));
    }
    Ok(Decision::Run {
        journal: Journal::new(&plan, &desired.digest, desired.revision.as_deref()),
        plan: Some(plan),
        resumed: false,
    })
}

impl Prepared {
    /// The fresh plan that will run; `None` when an interrupted sync resumes.
    pub fn plan(&self) -> Option<&Plan> {
        self.plan.as_ref()
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
        if let (true, Some(approved)) = (recheck, &self.plan) {
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
            journal_at: self.journal_at.clone(),
            stop,
            lease_lost: lease.map(|l| l.lost_flag()).unwrap_or_default(),
            lease_stale: lease.map(|l| l.stale_flag()).unwrap_or_default(),
            progress,
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
