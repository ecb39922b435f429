//! One stack's reconcile loop, on the replica that holds the stack.
//!
//! On a new commit of its repository it loads the stack at that commit
//! and syncs; on every interval it compares the live state with the last
//! synced commit (drift), reports it, and with self-heal syncs it back. A
//! failing pass is retried with exponential backoff, this stack's own: one
//! failing stack never delays another (each worker is its own task). A
//! commit whose content cannot be used is reported once and not retried
//! until the branch moves. A stop request (the lease lost or given up,
//! SIGTERM) stops at the next safe boundary of a running sync: the
//! executor never stops between an orphan delete and its upgrade, and the
//! journal lets the next holder finish the job.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use plimsoll_syncer::desired::DesiredState;
use plimsoll_syncer::execute::Progress;
use plimsoll_syncer::lease::LeaseCheck;
use plimsoll_syncer::progress::RunTracker;
use plimsoll_syncer::source::StackSource;
use plimsoll_syncer::sync::{
    observe_and_plan, prepare, Preparation, Stop, SyncOptions, SyncOutcome,
};

use crate::discover::StackLocation;
use crate::follow::{retry_after, HeadWatch};
use crate::metrics::Metrics;
use crate::status::{Board, PlanSummary, ReleaseInfo, StackState};
use crate::Trigger;

/// What a worker needs; one per held stack.
pub struct Worker {
    pub key: String,
    pub location: StackLocation,
    pub source: StackSource,
    pub head: HeadWatch,
    /// Every repository's head, to refuse a stack name declared twice.
    pub heads: crate::follow::Heads,
    pub sync: SyncOptions,
    pub client: kube::Client,
    pub metrics: Arc<Metrics>,
    pub board: Arc<Board>,
    pub interval: Duration,
    pub self_heal: bool,
    /// The stack's owner lease, as this replica holds it.
    pub owner: LeaseCheck,
    pub stop: Stop,
    /// Set while a sync runs (the shard loop does not give a busy stack
    /// up to rebalance).
    pub busy: Arc<AtomicBool>,
    /// Syncs of this replica at once, at most (`--max-syncs`): a commit
    /// touching every stack must not start a helm process per release of
    /// every stack at once.
    pub sync_slots: Arc<tokio::sync::Semaphore>,
    /// Commits loaded at once, at most (each runs `helm template` for its
    /// releases on a few threads): a new commit for fifty stacks must not
    /// start fifty loads' helm processes together.
    pub load_slots: Arc<tokio::sync::Semaphore>,
}

/// What the page shows of a stack: its state, last error and failure.
type Shown = (Option<StackState>, Option<String>, Option<String>);

/// The worker's memory between passes.
#[derive(Default)]
struct Memory {
    /// The desired state of the last synced commit, kept for drift checks.
    synced: Option<(String, Arc<DesiredState>)>,
    /// Why the last sync failed, if it did: the next pass retries it.
    last_failure: Option<String>,
    /// A commit whose content cannot be used, and why.
    rejected: Option<(String, String)>,
    /// The stack's name while its commit is rejected: the interrupted
    /// sync of an earlier commit is finished (and retried) under it.
    rejected_name: Option<String>,
    /// What the page showed before a transient interruption — a pass that
    /// failed (the API server unreachable, say) or a stretch with the
    /// lease unconfirmed — shown again when the next pass starts: that
    /// pass retries what was interrupted and sets its own state, if any.
    interrupted: Option<Shown>,
    /// Why the last reconcile pass failed, if it did: not a sync failure,
    /// so no longer remembered once the next pass starts.
    pass_failure: Option<String>,
    /// The name metrics carry (the stack's name, else its file).
    label: String,
}

impl Worker {
    fn record(&self, f: impl FnOnce(&mut crate::status::StackRecord)) {
        self.board.record(&self.key, f);
    }

    fn shown(&self) -> Shown {
        let mut shown = (None, None, None);
        self.board.record(&self.key, |r| {
            shown = (r.state, r.last_error.clone(), r.failure.clone())
        });
        shown
    }

    fn board_state(&self) -> Option<StackState> {
        let mut state = None;
        self.board.record(&self.key, |r| state = r.state);
        state
    }

    async fn desired(&self, commit: &str) -> anyhow::Result<DesiredState> {
        let _slot = self.load_slots.clone().acquire_owned().await?;
        let source = self.source.clone();
        let commit = commit.to_string();
        let helm = self.sync.settings.helm.clone();
        tokio::task::spawn_blocking(move || {
            plimsoll_syncer::desired::load(&source, Some(&commit), &helm)
        })
        .await?
    }

    /// Syncs; `true` when the cluster is now at `desired`.
    async fn sync(&self, mem: &mut Memory, desired: &DesiredState, why: &str) -> bool {
        mem.last_failure = None;
        let stack = desired.stack_name.clone();
        let revision = desired.revision.clone().unwrap_or_default();
        let scrubber = desired.scrubber.clone();
        let progress: Progress = {
            let stack = stack.clone();
            Arc::new(move |line: &str| tracing::info!(stack = %stack, "{}", scrubber.scrub(line)))
        };
        let scrub = |s: &str| desired.scrubber.scrub(s);
        tracing::info!(stack = %stack, revision = %revision, "syncing ({why})");
        let tracker = RunTracker::default();
        let mut opts = self.sync.clone();
        opts.tracker = Some(tracker.clone());
        // Busy once a slot is held: a queued stack may still be given up.
        let slot = match self.sync_slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                let previous = self.board_state();
                self.record(|r| r.state = Some(StackState::Queued));
                tracing::info!(stack = %stack, "waiting for one of the --max-syncs slots");
                let slot = tokio::select! {
                    slot = self.sync_slots.clone().acquire_owned() => slot.ok(),
                    _ = self.stop.requested() => None,
                };
                let Some(slot) = slot else {
                    self.record(|r| r.state = previous);
                    return false;
                };
                slot
            }
        };
        self.busy.store(true, Ordering::SeqCst);
        let outcome = match prepare(&self.client, desired, &opts, &progress).await {
            Ok(Preparation::Finished(outcome)) => Ok(outcome),
            Ok(Preparation::Ready(prepared)) => {
                // The plan being applied, for the page: exactly the one run.
                let summary = PlanSummary::of(prepared.plan(), &revision, &scrub);
                self.record(|r| {
                    r.plan = Some(summary);
                    r.state = Some(StackState::Syncing);
                    r.run = Some(tracker);
                });
                prepared
                    .execute(
                        &self.client,
                        desired,
                        &opts,
                        self.stop.flag(),
                        progress,
                        false,
                    )
                    .await
            }
            Err(e) => Err(e),
        };
        drop(slot);
        self.busy.store(false, Ordering::SeqCst);
        self.record(|r| r.run = None);
        let m = &self.metrics;
        // A failed sync: reported, remembered (the next pass retries it).
        let failed = |mem: &mut Memory, why: String| {
            m.error(&stack, &why);
            tracing::error!(stack = %stack, "sync failed: {why}");
            mem.last_failure = Some(why.clone());
            (
                false,
                StackState::Failed,
                Some(format!("the last sync failed: {why}")),
            )
        };
        let (ok, state, error) = match outcome {
            Ok(SyncOutcome::Done {
                report, elapsed, ..
            }) => {
                for (k, n) in &report.executed {
                    m.steps_executed(&stack, k, u64::from(*n));
                }
                m.observe_duration(&stack, elapsed.as_secs_f64());
                m.sync_result(&stack, "succeeded");
                m.clear_error(&stack);
                tracing::info!(stack = %stack, seconds = elapsed.as_secs_f64(), "sync complete");
                (true, StackState::InSync, None)
            }
            Ok(SyncOutcome::NothingToDo) => {
                m.sync_result(&stack, "nothing-to-do");
                m.clear_error(&stack);
                tracing::info!(stack = %stack, "nothing to do");
                (true, StackState::InSync, None)
            }
            Ok(SyncOutcome::DryRun { .. } | SyncOutcome::Declined) => {
                (false, StackState::InSync, None)
            }
            // The daemon never runs a saved plan: it plans each commit.
            Ok(SyncOutcome::StateChanged { .. } | SyncOutcome::SavedPlanOutdated { .. }) => {
                m.sync_result(&stack, "state-changed");
                (
                    false,
                    StackState::Failed,
                    Some("the cluster changed during the sync; retrying".to_string()),
                )
            }
            Ok(SyncOutcome::Refused(p)) => {
                m.sync_result(&stack, "refused");
                let why: Vec<String> = p.refusals.iter().map(|r| scrub(&r.message())).collect();
                m.error(&stack, &why.join("; "));
                tracing::error!(stack = %stack, refusals = %why.join("; "), "the plan is refused; nothing changed");
                let summary = PlanSummary::of(&p, &revision, &scrub);
                self.record(|r| r.plan = Some(summary));
                (false, StackState::Refused, Some(why.join("; ")))
            }
            Ok(SyncOutcome::Stopped { .. }) => {
                m.sync_result(&stack, "stopped");
                (
                    false,
                    StackState::Failed,
                    Some("stopped at a safe boundary".to_string()),
                )
            }
            Ok(SyncOutcome::Failed { report }) => {
                m.sync_result(&stack, "failed");
                for (k, n) in &report.executed {
                    m.steps_executed(&stack, k, u64::from(*n));
                }
                if let Some(step) = report.failed_step() {
                    m.step_failed(&stack, step.kind);
                }
                let why = match &report.end {
                    plimsoll_syncer::execute::RunEnd::Failed { error, .. } => {
                        scrub(&error.to_string())
                    }
                    _ => String::new(),
                };
                failed(mem, why)
            }
            Err(e) => {
                m.sync_result(&stack, "failed");
                failed(mem, scrub(&format!("{e:#}")))
            }
        };
        let failed = state == StackState::Failed;
        self.record(|r| {
            r.state = Some(state);
            if failed {
                r.failure = error.clone();
            } else if ok {
                r.failure = None;
            }
            r.last_error = error;
            if ok {
                r.plan = None;
                r.drift.clear();
            }
        });
        ok
    }

    /// Compares the live state with the synced commit; reports and, with
    /// self-heal, syncs back.
    async fn check_drift(&self, mem: &mut Memory) -> anyhow::Result<()> {
        let Some((commit, desired)) = mem.synced.clone() else {
            return Ok(());
        };
        let plan = observe_and_plan(&self.client, &desired, &self.sync).await?;
        let drifted =
            crate::drift::report(&self.client, &self.metrics, &desired, &commit, &plan).await;
        let scrub = |s: &str| desired.scrubber.scrub(s);
        let summary = PlanSummary::of(&plan, &commit, &scrub);
        let has_drift = !drifted.is_empty();
        self.record(|r| {
            r.drift = drifted;
            if has_drift {
                r.state = Some(StackState::Drifted);
                r.plan = Some(summary);
            } else if mem.rejected.is_none() && mem.last_failure.is_none() {
                r.state = Some(StackState::InSync);
                r.plan = None;
            }
        });
        if has_drift && self.self_heal {
            self.sync(mem, &desired, "self-heal").await;
        }
        Ok(())
    }

    /// One pass: the branch's commit for this stack, synced or checked.
    async fn pass(&self, mem: &mut Memory, why: Trigger) -> anyhow::Result<()> {
        let Some(head) = self.head.borrow().clone() else {
            return Ok(());
        };
        let Some(found) = head.stack(&self.location.file).cloned() else {
            // Gone from the repository: the shard loop gives it up.
            return Ok(());
        };
        let commit = head.commit.clone();
        self.record(|r| r.head = Some(commit.clone()));
        let new_commit = mem.synced.as_ref().is_none_or(|(c, _)| *c != commit);
        let rejected = mem.rejected.as_ref().is_some_and(|(c, _)| *c == commit);
        if new_commit && rejected {
            // Reported already; the same commit fails the same way. An
            // interrupted earlier sync that failed to finish is retried.
            if let (Some(_), Some(name)) = (&mem.last_failure, mem.rejected_name.clone()) {
                self.finish_interrupted(mem, &name, &commit).await?;
            }
            return self.check_drift(mem).await;
        }
        if !new_commit {
            return self.check_drift(mem).await;
        }
        tracing::info!(stack = %self.location.file, revision = %commit, trigger = why.as_str(), "new commit for stack {}", self.location.file);
        mem.rejected = None;
        mem.rejected_name = None;
        // A name another file declares too is refused before anything runs.
        let duplicate = self.heads.duplicate(&self.location);
        let declared = found.name.clone().ok();
        let loaded = match (found.name, duplicate) {
            (_, Some(why)) => {
                Err(anyhow::anyhow!(why).context(plimsoll_syncer::desired::UnusableContent))
            }
            (Err(why), None) => {
                Err(anyhow::anyhow!(why).context(plimsoll_syncer::desired::UnusableContent))
            }
            (Ok(_), None) => self.desired(&commit).await,
        };
        let desired = match loaded {
            Ok(d) => d,
            Err(e) if plimsoll_syncer::desired::is_unusable_content(&e) => {
                self.reject(mem, &commit, &e).await;
                // Not when two files declare the name: whose journal it
                // is cannot be told.
                let name = (!mem.label.is_empty())
                    .then(|| mem.label.clone())
                    .or(declared)
                    .filter(|_| self.heads.duplicate(&self.location).is_none());
                if let Some(name) = name {
                    mem.rejected_name = Some(name.clone());
                    self.finish_interrupted(mem, &name, &commit).await?;
                }
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        if mem.label != desired.stack_name {
            if !mem.label.is_empty() {
                self.metrics.forget(&mem.label);
            }
            mem.label = desired.stack_name.clone();
        }
        let releases = desired
            .releases
            .iter()
            .map(|r| ReleaseInfo {
                name: r.name.clone(),
                namespace: r.namespace.clone(),
                stage: r.stage.clone(),
                chart: r.chart.clone(),
                version: r.version.clone(),
            })
            .collect();
        let name = desired.stack_name.clone();
        self.record(|r| {
            r.name = Some(name);
            r.releases = releases;
        });
        if self.sync(mem, &desired, why.as_str()).await {
            self.metrics.synced(&desired.stack_name, &commit);
            self.record(|r| r.synced = Some(commit.clone()));
            mem.synced = Some((commit, Arc::new(desired)));
        } else if self.board_state() == Some(StackState::Refused) {
            self.finish_interrupted(mem, &desired.stack_name, &commit)
                .await?;
        }
        Ok(())
    }

    /// The branch's commit cannot be synced (refused, or its content
    /// unusable), but the journal holds a sync of an earlier commit that
    /// was cut short (a replica killed, the API server gone): that commit
    /// was accepted and is partly applied, so it is finished — resumed
    /// when its journal still agrees with a fresh plan, else planned
    /// afresh — and the cluster is left at the last commit accepted, not
    /// half way. The page keeps showing why the branch's commit is not
    /// synced.
    async fn finish_interrupted(
        &self,
        mem: &mut Memory,
        name: &str,
        head: &str,
    ) -> anyhow::Result<()> {
        let at = plimsoll_syncer::journal_store::JournalLocation::for_stack(
            &self.sync.journal_namespace,
            name,
        );
        let journal = match plimsoll_syncer::journal_store::load(&self.client, &at).await {
            Ok(Some(j)) => j,
            Ok(None) => return Ok(()),
            // Unreadable: the next sync of a good commit replaces it.
            Err(_) => return Ok(()),
        };
        let Some(revision) = journal.revision.clone().filter(|r| !r.is_empty()) else {
            return Ok(());
        };
        let finished = journal.status == plimsoll_planner::journal::JournalStatus::Succeeded
            || journal.is_complete();
        let synced_here = mem.synced.as_ref().is_some_and(|(c, _)| *c == revision);
        if finished || revision == head || synced_here {
            return Ok(());
        }
        let desired = match self.desired(&revision).await {
            Ok(d) if d.stack_name == name => d,
            // That commit is not this stack's any more (renamed, moved).
            Ok(_) => return Ok(()),
            // Gone from the repository (a forced push) or unreadable: the
            // branch's next good commit is synced as usual.
            Err(e) => {
                let why = plimsoll_planner::redact::redact_text(&format!("{e:#}")).into_owned();
                tracing::warn!(stack = %name, revision = %revision, "cannot load the interrupted sync's commit to finish it: {why}");
                return Ok(());
            }
        };
        let mut shown = None;
        self.board.record(&self.key, |r| {
            shown = Some((r.state, r.last_error.clone(), r.plan.clone()));
        });
        tracing::info!(stack = %name, revision = %revision, head = %head, "the branch's commit cannot be synced; finishing the interrupted sync of {}", &revision[..12.min(revision.len())]);
        if self
            .sync(mem, &desired, "finish the interrupted sync")
            .await
        {
            self.metrics.synced(&desired.stack_name, &revision);
            self.record(|r| r.synced = Some(revision.clone()));
            mem.synced = Some((revision, Arc::new(desired)));
            if let Some((state, error, plan)) = shown {
                self.record(|r| {
                    r.state = state;
                    r.last_error = error;
                    r.plan = plan;
                });
            }
        }
        Ok(())
    }

    /// Reports a commit whose content cannot be used (log, metric, a
    /// Warning Event) and remembers it, so that it is not retried until
    /// the branch moves; drift of the last good commit is still watched.
    async fn reject(&self, mem: &mut Memory, commit: &str, e: &anyhow::Error) {
        // No desired state to scrub with: credentials in the text go.
        let why = plimsoll_planner::redact::redact_text(&format!("{e:#}")).into_owned();
        let label = if mem.label.is_empty() {
            self.location.file.clone()
        } else {
            mem.label.clone()
        };
        // The record first: whoever reads the log line then sees it.
        mem.rejected = Some((commit.to_string(), why.clone()));
        self.record(|r| {
            r.state = Some(StackState::Rejected);
            r.last_error = Some(why.clone());
            r.plan = None;
        });
        self.metrics.error(&label, &why);
        self.metrics.sync_result(&label, "rejected");
        crate::drift::commit_event(&self.client, &self.sync.journal_namespace, commit, &why).await;
        tracing::error!(stack = %self.location.file, revision = %commit, "the commit cannot be used; waiting for the branch to move: {why}");
    }

    /// Runs until stopped. Passes start only while the owner lease is
    /// confirmed.
    pub async fn run(self) {
        tracing::info!(stack = %self.location.file, key = %self.key, "working on the stack");
        let mut mem = Memory::default();
        let mut head = self.head.clone();
        // The head now is this worker's first pass; later ones wake it.
        head.borrow_and_update();
        let mut why = Trigger::Start;
        let mut failures = 0u32;
        loop {
            if self.stop.is_requested() {
                break;
            }
            let failed = if self.owner.is_confirmed() {
                if let Some(text) = mem.pass_failure.take() {
                    if mem.last_failure.as_deref() == Some(text.as_str()) {
                        mem.last_failure = None;
                    }
                }
                if let Some((state, last_error, failure)) = mem.interrupted.take() {
                    self.record(|r| {
                        r.state = state;
                        r.last_error = last_error;
                        r.failure = failure;
                    });
                }
                let started = Instant::now();
                let cpu = crate::metrics::cpu_seconds();
                let result = self.pass(&mut mem, why).await;
                let spent = crate::metrics::cpu_seconds() - cpu;
                if !mem.label.is_empty() {
                    self.metrics
                        .reconcile_pass(&mem.label, spent, started.elapsed().as_secs_f64());
                }
                let at = crate::status::now();
                match result {
                    Err(e) => {
                        let text =
                            plimsoll_planner::redact::redact_text(&format!("{e:#}")).into_owned();
                        let text = match &mem.synced {
                            Some((_, d)) => d.scrubber.scrub(&text),
                            None => text,
                        };
                        tracing::error!(stack = %self.location.file, "reconcile pass failed: {text}");
                        if !mem.label.is_empty() {
                            self.metrics.error(&mem.label, &text);
                        }
                        if mem.interrupted.is_none() {
                            mem.interrupted = Some(self.shown());
                        }
                        mem.pass_failure = Some(text.clone());
                        mem.last_failure = Some(text.clone());
                        let why = format!("the last reconcile pass failed: {text}");
                        self.record(|r| {
                            r.state = Some(StackState::Failed);
                            r.last_error = Some(why.clone());
                            r.failure = Some(why);
                            r.last_pass = Some(at);
                        });
                        true
                    }
                    Ok(()) => {
                        self.record(|r| r.last_pass = Some(at));
                        mem.last_failure.is_some()
                    }
                }
            } else {
                if mem.interrupted.is_none() {
                    mem.interrupted = Some(self.shown());
                }
                self.record(|r| r.state = Some(StackState::Unconfirmed));
                false
            };
            if self.stop.is_requested() {
                break;
            }
            failures = if failed { failures + 1 } else { 0 };
            let wait = if failed {
                let wait = retry_after(failures, self.interval);
                tracing::info!(
                    stack = %self.location.file,
                    "retrying in {}s (failure {failures} in a row)",
                    wait.as_secs()
                );
                wait
            } else if !self.owner.is_confirmed() {
                Duration::from_millis(500)
            } else {
                crate::watch::jittered(self.interval)
            };
            tokio::select! {
                changed = head.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    why = Trigger::Commit;
                }
                _ = tokio::time::sleep(wait) => { why = Trigger::Timer; }
                _ = self.stop.requested() => break,
            }
        }
        if !mem.label.is_empty() {
            self.metrics.forget(&mem.label);
        }
        tracing::info!(stack = %self.location.file, key = %self.key, "stopped working on the stack");
    }
}
