//! The daemon: follow the tracked branch and keep the cluster at it.
//!
//! Triggers: a timer (the interval, jittered), changes under a local
//! repository's `.git` (notify), and `POST /hook` (push webhooks). On a new
//! commit it syncs; on every interval it also compares the live state with
//! the last synced commit (drift), reports it, and with `self_heal` syncs
//! it back. `/metrics`, `/healthz` and `/readyz` are served on `listen`.
//! A stop request stops at the next safe boundary of a running sync (the
//! executor never stops between an orphan delete and its upgrade); the
//! journal lets the next start finish the job.
//!
//! [`run`] is the whole daemon as a future: the binary runs it on a
//! runtime, and tests run it in-process.

pub mod drift;
pub mod http;
pub mod metrics;
pub mod watch;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::mpsc;

use crate::desired::DesiredState;
use crate::execute::Progress;
use crate::source::StackSource;
use crate::sync::{observe_and_plan, sync_once, Stop, SyncOptions, SyncOutcome};
use metrics::Metrics;

/// Where the deployment repository comes from.
#[derive(Clone, Debug)]
pub enum Upstream {
    /// A local repository (watched with notify).
    Local(PathBuf),
    /// A remote URL, fetched into a bare mirror.
    Remote { url: String, mirror: PathBuf },
}

impl Upstream {
    /// A remote repository; its mirror defaults to
    /// `~/.cache/plimsoll/mirrors/ID` (ID: from the URL's digest).
    pub fn remote(url: String, mirror: Option<PathBuf>) -> Upstream {
        let mirror = mirror.unwrap_or_else(|| {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(std::env::temp_dir);
            let id = plimsoll_planner::journal::digest(url.as_bytes());
            home.join(".cache/plimsoll/mirrors").join(&id[..16])
        });
        Upstream::Remote { url, mirror }
    }
}

/// What woke the daemon up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    Start,
    Timer,
    Notify,
    Webhook,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Start => "start",
            Trigger::Timer => "timer",
            Trigger::Notify => "notify",
            Trigger::Webhook => "webhook",
        }
    }
}

#[derive(Clone, Debug)]
pub struct DaemonOptions {
    pub upstream: Upstream,
    pub branch: String,
    /// Variables set for the stack.
    pub set: Vec<(String, String)>,
    pub interval: Duration,
    pub listen: Option<std::net::SocketAddr>,
    pub self_heal: bool,
    pub webhook_secret: Option<Vec<u8>>,
    /// Chart repository credentials (files, environment; the daemon adds
    /// Secrets of the journal namespace).
    pub credentials: crate::charts::CredentialStore,
}

impl DaemonOptions {
    /// The repository the stack is read from (the mirror for a remote).
    fn repository(&self) -> StackSource {
        let repo = match &self.upstream {
            Upstream::Local(path) => path.clone(),
            Upstream::Remote { mirror, .. } => mirror.clone(),
        };
        StackSource {
            repo,
            set: self.set.clone(),
            credentials: self.credentials.clone(),
        }
    }
}

/// Where a running daemon can be reached (for tests and logs).
pub struct Running {
    /// The HTTP endpoint's bound address, when `listen` was set.
    pub addr: Option<std::net::SocketAddr>,
}

struct Daemon {
    opts: DaemonOptions,
    source: StackSource,
    sync: SyncOptions,
    client: kube::Client,
    metrics: Arc<Metrics>,
    not_ready: Arc<std::sync::RwLock<Option<String>>>,
    stop: Stop,
    /// The desired state of the last synced commit, kept for drift checks.
    synced: Option<(String, Arc<DesiredState>)>,
    /// Why the last sync failed (a step or the cluster), if it did: the
    /// next pass retries it, with backoff.
    last_failure: Option<String>,
    /// A commit whose content cannot be used (a hostile or broken stack
    /// file or layer), and why: reported once, not retried until the
    /// branch moves.
    rejected: Option<(String, String)>,
}

/// The first retry after a failure; each further one waits twice as long,
/// up to the interval.
const FIRST_RETRY: Duration = Duration::from_secs(5);

/// How long to wait after `failures` failed passes in a row.
fn retry_after(failures: u32, interval: Duration) -> Duration {
    FIRST_RETRY
        .saturating_mul(1 << failures.saturating_sub(1).min(16))
        .min(interval)
}

impl Daemon {
    async fn desired(&self, commit: &str) -> anyhow::Result<DesiredState> {
        let source = self.source.clone();
        let commit = commit.to_string();
        let helm = self.sync.settings.helm.clone();
        tokio::task::spawn_blocking(move || crate::desired::load(&source, Some(&commit), &helm))
            .await?
    }

    /// Syncs; `true` when the cluster is now at `desired`.
    async fn sync(&mut self, desired: &DesiredState, why: &str) -> bool {
        self.last_failure = None;
        let scrubber = desired.scrubber.clone();
        let progress: Progress =
            Arc::new(move |line: &str| tracing::info!("{}", scrubber.scrub(line)));
        let scrub = |s: &str| desired.scrubber.scrub(s);
        tracing::info!(
            revision = desired.revision.as_deref().unwrap_or(""),
            "syncing ({why})"
        );
        let outcome = sync_once(
            &self.client,
            desired,
            &self.sync,
            self.stop.flag(),
            progress,
        )
        .await;
        let m = &self.metrics;
        match outcome {
            Ok(SyncOutcome::Done {
                report, elapsed, ..
            }) => {
                for (k, n) in &report.executed {
                    m.steps_executed(k, u64::from(*n));
                }
                m.observe_duration(elapsed.as_secs_f64());
                m.sync_result("succeeded");
                m.clear_error();
                tracing::info!(seconds = elapsed.as_secs_f64(), "sync complete");
                true
            }
            Ok(SyncOutcome::NothingToDo) => {
                m.sync_result("nothing-to-do");
                m.clear_error();
                tracing::info!("nothing to do");
                true
            }
            Ok(SyncOutcome::DryRun { .. } | SyncOutcome::Declined) => false,
            // The daemon never runs a saved plan: it plans each commit.
            Ok(SyncOutcome::StateChanged { .. } | SyncOutcome::SavedPlanOutdated { .. }) => {
                m.sync_result("state-changed");
                false
            }
            Ok(SyncOutcome::Refused(p)) => {
                m.sync_result("refused");
                let why: Vec<String> = p.refusals.iter().map(|r| scrub(&r.message())).collect();
                m.error(&why.join("; "));
                tracing::error!(refusals = %why.join("; "), "the plan is refused; nothing changed");
                false
            }
            Ok(SyncOutcome::Stopped { .. }) => {
                m.sync_result("stopped");
                false
            }
            Ok(SyncOutcome::Failed { report }) => {
                m.sync_result("failed");
                for (k, n) in &report.executed {
                    m.steps_executed(k, u64::from(*n));
                }
                if let Some(step) = report.failed_step() {
                    m.step_failed(step.kind);
                }
                let why = match &report.end {
                    crate::execute::RunEnd::Failed { error, .. } => scrub(&error.to_string()),
                    _ => String::new(),
                };
                m.error(&why);
                tracing::error!("sync failed: {why}");
                self.last_failure = Some(why);
                false
            }
            Err(e) => {
                let why = scrub(&format!("{e:#}"));
                m.sync_result("failed");
                m.error(&why);
                tracing::error!("sync failed: {why}");
                self.last_failure = Some(why);
                false
            }
        }
    }

    /// Compares the live state with the synced commit; reports and, with
    /// self-heal, syncs back.
    async fn check_drift(&mut self) -> anyhow::Result<()> {
        let Some((commit, desired)) = self.synced.clone() else {
            return Ok(());
        };
        let plan = observe_and_plan(&self.client, &desired, &self.sync).await?;
        let drifted = drift::report(&self.client, &self.metrics, &desired, &commit, &plan).await;
        if !drifted.is_empty() && self.opts.self_heal {
            self.sync(&desired, "self-heal").await;
        }
        Ok(())
    }

    async fn pass(&mut self, why: Trigger) -> anyhow::Result<()> {
        let cpu = metrics::cpu_seconds();
        let head = {
            let (upstream, branch) = (self.opts.upstream.clone(), self.opts.branch.clone());
            tokio::task::spawn_blocking(move || head_of(&upstream, &branch)).await??
        };
        let new_commit = self.synced.as_ref().is_none_or(|(c, _)| *c != head);
        let rejected = self.rejected.as_ref().is_some_and(|(c, _)| *c == head);
        if new_commit && rejected {
            // Reported already; the same commit fails the same way.
            if self.synced.is_some() {
                self.check_drift().await?;
            }
        } else if new_commit {
            tracing::info!(revision = %head, trigger = why.as_str(), "new commit on {}", self.opts.branch);
            self.rejected = None;
            let desired = match self.desired(&head).await {
                Ok(d) => d,
                Err(e) if crate::desired::is_unusable_content(&e) => {
                    self.reject(&head, &e).await;
                    return Ok(());
                }
                Err(e) => return Err(e),
            };
            self.metrics.set_stack(&desired.stack_name);
            if self.sync(&desired, why.as_str()).await {
                self.metrics.synced(&head);
                self.synced = Some((head, Arc::new(desired)));
            }
        } else {
            self.check_drift().await?;
        }
        self.publish_readiness();
        let spent = metrics::cpu_seconds() - cpu;
        self.metrics.reconcile_cpu(spent);
        tracing::debug!(cpu_seconds = spent, "reconcile pass done");
        Ok(())
    }
}

impl Daemon {
    /// Not ready while the last sync failed or the branch's commit cannot
    /// be used.
    fn publish_readiness(&self) {
        if let Ok(mut w) = self.not_ready.write() {
            *w = match (&self.rejected, &self.last_failure) {
                (Some((commit, why)), _) => Some(format!(
                    "commit {} cannot be used: {why}",
                    &commit[..12.min(commit.len())]
                )),
                (None, Some(f)) => Some(format!("the last sync failed: {f}")),
                (None, None) => None,
            };
        }
    }

    /// Reports a commit whose content cannot be used (log, metric, a
    /// Warning Event) and remembers it, so that it is not retried until
    /// the branch moves; the daemon stays up and keeps watching drift of
    /// the last good commit.
    async fn reject(&mut self, commit: &str, e: &anyhow::Error) {
        // No desired state to scrub with: credentials in the text go.
        let why = plimsoll_planner::redact::redact_text(&format!("{e:#}")).into_owned();
        // Readiness first: whoever reads the log line then sees it.
        self.rejected = Some((commit.to_string(), why.clone()));
        self.publish_readiness();
        self.metrics.error(&why);
        self.metrics.sync_result("rejected");
        drift::commit_event(&self.client, &self.sync.journal_namespace, commit, &why).await;
        tracing::error!(revision = %commit, "the commit cannot be used; waiting for the branch to move: {why}");
    }
}

fn head_of(upstream: &Upstream, branch: &str) -> anyhow::Result<String> {
    Ok(match upstream {
        Upstream::Local(path) => crate::git::branch_head(path, branch)?,
        Upstream::Remote { url, mirror } => crate::git::fetch_branch(url, mirror, branch)?,
    })
}

/// Reads Secrets of the daemon's namespace (chart repository
/// credentials), from the blocking threads that load commits.
fn secret_reader(client: &kube::Client, namespace: &str) -> Arc<crate::charts::SecretReader> {
    let api: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(client.clone(), namespace);
    let handle = tokio::runtime::Handle::current();
    Arc::new(move |name: &str| {
        let secret = handle.block_on(api.get(name))?;
        Ok(secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect())
    })
}

/// Runs the daemon until a stop is requested (the binary requests it on
/// SIGTERM or Ctrl-C). `started` learns the bound address once the endpoint listens.
pub async fn run(
    opts: DaemonOptions,
    client: kube::Client,
    sync: SyncOptions,
    stop: Stop,
    started: impl FnOnce(Running),
) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::default());
    let not_ready = Arc::new(std::sync::RwLock::new(Some(
        "no reconcile pass has completed".to_string(),
    )));
    let (tx, mut rx) = mpsc::channel::<Trigger>(16);
    let mut addr = None;
    let server = match opts.listen {
        Some(listen) => {
            let listener = http::bind(listen)
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            let bound = listener.local_addr()?;
            tracing::info!("serving /metrics, /healthz, /readyz and POST /hook on {bound}");
            addr = Some(bound);
            let endpoint = Arc::new(http::Endpoint {
                metrics: metrics.clone(),
                trigger: tx.clone(),
                webhook_secret: opts.webhook_secret.clone(),
                not_ready: not_ready.clone(),
            });
            Some(tokio::spawn(http::serve(listener, endpoint)))
        }
        None => None,
    };
    started(Running { addr });
    let _watcher = match &opts.upstream {
        Upstream::Local(path) => Some(watch::watch_local(path, tx.clone())?),
        Upstream::Remote { .. } => None,
    };
    let mut source = opts.repository();
    source.credentials.secrets = Some(secret_reader(&client, &sync.journal_namespace));
    let mut daemon = Daemon {
        source,
        opts,
        sync,
        client,
        metrics: metrics.clone(),
        not_ready,
        stop: stop.clone(),
        synced: None,
        last_failure: None,
        rejected: None,
    };
    let mut why = Trigger::Start;
    let mut failures = 0u32;
    loop {
        let started = Instant::now();
        let failed = match daemon.pass(why).await {
            Err(e) => {
                tracing::error!("reconcile pass failed: {e:#}");
                metrics.error(&format!("{e:#}"));
                if let Ok(mut w) = daemon.not_ready.write() {
                    *w = Some(format!("the last reconcile pass failed: {e:#}"));
                }
                true
            }
            Ok(()) => daemon.last_failure.is_some(),
        };
        if stop.is_requested() {
            break;
        }
        let interval = daemon.opts.interval;
        failures = if failed { failures + 1 } else { 0 };
        let wait = if failed {
            let wait = retry_after(failures, interval);
            tracing::info!(
                "retrying in {}s (failure {failures} in a row)",
                wait.as_secs()
            );
            wait
        } else {
            watch::jittered(interval).saturating_sub(started.elapsed().min(interval / 2))
        };
        tokio::select! {
            t = rx.recv() => {
                why = t.unwrap_or(Trigger::Timer);
                // Coalesce a burst of notifications into one pass.
                tokio::time::sleep(Duration::from_millis(50)).await;
                while rx.try_recv().is_ok() {}
            }
            _ = tokio::time::sleep(wait) => { why = Trigger::Timer; }
            _ = stop.requested() => break,
        }
    }
    if let Some(s) = server {
        s.abort();
    }
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_up_to_the_interval() {
        let interval = Duration::from_secs(60);
        let waits: Vec<u64> = (1..=6)
            .map(|n| retry_after(n, interval).as_secs())
            .collect();
        assert_eq!(waits, [5, 10, 20, 40, 60, 60]);
        assert_eq!(retry_after(1000, interval), interval);
        assert_eq!(
            retry_after(1, Duration::from_secs(2)),
            Duration::from_secs(2)
        );
    }
}
