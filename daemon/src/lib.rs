//! The daemon: follows branches of deployment repositories and keeps the
//! cluster at them, stack by stack, with its peers.
//!
//! - [`config`]: what it follows (repositories, branches, stack file
//!   patterns) and how it runs.
//! - [`follow`]: one task per repository: fetch (or notify), find the
//!   stack files of each new commit ([`discover`]), publish the head.
//! - [`shard`]: replicas share the stacks through Leases (member leases to
//!   find peers, an owner lease per stack; a pure fair-share decision).
//! - [`worker`]: one task per stack held here: sync new commits, check
//!   drift, heal it, back off on failures, report.
//! - [`status`]: the live record behind `/readyz` and the status page
//!   (HTML and JSON, rendered by pure functions).
//! - [`http`], [`metrics`], [`drift`], [`watch`]: endpoints, OpenMetrics,
//!   drift reports and Events, notify and the jittered interval.
//!
//! [`run`] is the whole daemon as a future: the binary runs it on a
//! runtime; tests run it in-process.
//!
//! **Architecture Invariant:** the daemon decides nothing about a cluster
//! itself: every change is a sync of `plimsoll-syncer` (a plan of the pure
//! planner, under the stack's sync lease); the leases it writes besides
//! are the owner and member leases of [`shard`].

pub mod config;
pub mod discover;
pub mod drift;
pub mod follow;
pub mod hook;
pub mod http;
pub mod metrics;
pub mod shard;
pub mod status;
pub mod watch;
pub mod worker;

use std::collections::{BTreeMap, HashMap, HashSet};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use plimsoll_syncer::source::StackSource;
use plimsoll_syncer::sync::{Stop, SyncOptions};
use tokio::sync::{mpsc, watch as tokio_watch, Notify};

pub use config::{DaemonOptions, Repository, StatusOptions, Upstream};

use crate::discover::StackLocation;
use crate::follow::Head;
use crate::metrics::Metrics;
use crate::shard::Shard;
use crate::status::{Board, RepositoryStatus};

/// What woke a task up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    Start,
    Timer,
    Notify,
    Webhook,
    /// The repository's follower published a new commit.
    Commit,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Start => "start",
            Trigger::Timer => "timer",
            Trigger::Notify => "notify",
            Trigger::Webhook => "webhook",
            Trigger::Commit => "commit",
        }
    }
}

/// Where a running daemon can be reached (for tests and logs).
pub struct Running {
    /// The main endpoint's bound address, when `listen` was set.
    pub addr: Option<std::net::SocketAddr>,
    /// The status page's bound address, when it is served.
    pub status_addr: Option<std::net::SocketAddr>,
}

/// Reads Secrets of the daemon's namespace (chart repository
/// credentials), from the blocking threads that load commits.
fn secret_reader(
    client: &kube::Client,
    namespace: &str,
) -> Arc<plimsoll_syncer::charts::SecretReader> {
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

/// A worker of a stack held here.
struct StackTask {
    stop: Stop,
    busy: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
    /// Being given up (rebalancing, or gone from the repository: `true`).
    leaving: Option<bool>,
}

/// Binds the status page: a failure on the default address (another
/// daemon on this machine has it) is a warning, on a given one an error.
async fn bind_status(status: &StatusOptions) -> anyhow::Result<Option<tokio::net::TcpListener>> {
    match http::bind(status.listen).await {
        Ok(l) => Ok(Some(l)),
        Err(e) if !status.explicit => {
            tracing::warn!(
                "the status page is not served: cannot listen on {} ({e}); pass --status-listen ADDR",
                status.listen
            );
            Ok(None)
        }
        Err(e) => Err(e)
            .with_context(|| format!("cannot listen on {} for the status page", status.listen)),
    }
}

/// Runs the daemon until a stop is requested (the binary requests it on
/// SIGTERM or Ctrl-C). `started` learns the bound addresses once the
/// endpoints listen.
pub async fn run(
    opts: DaemonOptions,
    client: kube::Client,
    mut sync: SyncOptions,
    stop: Stop,
    started: impl FnOnce(Running),
) -> anyhow::Result<()> {
    sync.holder = opts.identity.clone();
    let metrics = Arc::new(Metrics::default());
    let board = Board::new(
        &opts.identity,
        &opts.group,
        opts.repositories
            .iter()
            .map(|r| RepositoryStatus {
                repository: r.upstream.display(),
                branch: r.branch.clone(),
                stacks: r.stacks.clone(),
                ..Default::default()
            })
            .collect(),
    );

    // One follower per repository.
    let heads_changed = Arc::new(Notify::new());
    let mut heads: Vec<follow::HeadWatch> = Vec::new();
    let mut triggers = Vec::new();
    let mut watchers = Vec::new();
    let mut followers = Vec::new();
    for (i, repo) in opts.repositories.iter().enumerate() {
        let (tx, rx) = tokio_watch::channel::<Option<Arc<Head>>>(None);
        let (trigger_tx, trigger_rx) = mpsc::channel::<Trigger>(16);
        if let Upstream::Local(path) = &repo.upstream {
            watchers.push(watch::watch_local(path, trigger_tx.clone())?);
        }
        let key = match &repo.upstream {
            Upstream::Remote { url, .. } => hook::url_key(url),
            Upstream::Local(_) => None,
        };
        let followed = hook::Followed {
            key,
            branch: repo.branch.clone(),
        };
        triggers.push((followed, trigger_tx));
        heads.push(rx.clone());
        let notify = heads_changed.clone();
        let mut published = rx;
        tokio::spawn(async move {
            while published.changed().await.is_ok() {
                notify.notify_one();
            }
        });
        followers.push(tokio::spawn(follow::follow(
            i,
            repo.clone(),
            opts.interval,
            tx,
            trigger_rx,
            board.clone(),
            stop.clone(),
        )));
    }

    // Endpoints.
    let mut servers = Vec::new();
    let mut addr = None;
    if let Some(listen) = opts.listen {
        let listener = http::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let bound = listener.local_addr()?;
        tracing::info!("serving /metrics, /healthz, /readyz and POST /hook on {bound}");
        addr = Some(bound);
        let endpoint = Arc::new(http::Endpoint {
            metrics: metrics.clone(),
            triggers: triggers.clone(),
            webhook_secret: opts.webhook_secret.clone(),
            board: board.clone(),
            routes: http::Routes::Main,
        });
        servers.push(tokio::spawn(http::serve(listener, endpoint)));
    }
    let mut status_addr = None;
    if let Some(status) = &opts.status {
        if let Some(listener) = bind_status(status).await? {
            let bound = listener.local_addr()?;
            tracing::info!(
                "serving the status page on http://{bound}/{}",
                if status.token.is_some() {
                    " (a token is required)"
                } else {
                    ""
                }
            );
            status_addr = Some(bound);
            let endpoint = Arc::new(http::Endpoint {
                metrics: metrics.clone(),
                triggers: Vec::new(),
                webhook_secret: None,
                board: board.clone(),
                routes: http::Routes::Status {
                    token: status.token.clone(),
                },
            });
            servers.push(tokio::spawn(http::serve(listener, endpoint)));
        }
    }
    started(Running { addr, status_addr });

    let credentials = {
        let mut c = opts.credentials.clone();
        c.secrets = Some(secret_reader(&client, &sync.journal_namespace));
        c
    };
    let fleet_heads = follow::Heads {
        repositories: Arc::new(opts.repositories.clone()),
        heads: heads.clone(),
    };
    let mut shard = Shard::new(
        &client,
        &sync.journal_namespace,
        &opts.identity,
        &opts.group,
        sync.lease_duration,
    );
    tracing::info!(identity = %opts.identity, group = %opts.group, "sharing stacks with the group's replicas through leases in {}", sync.journal_namespace);
    let sync_slots = Arc::new(tokio::sync::Semaphore::new(opts.max_syncs.max(1)));
    // Loading a commit is CPU work (helm template): about one per core.
    let load_slots = Arc::new(tokio::sync::Semaphore::new(
        std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 4)),
    ));
    let mut workers: HashMap<String, StackTask> = HashMap::new();
    let mut failures = 0u32;
    let mut namespace_ready = false;
    loop {
        // The stacks the repositories hold now.
        let mut all: Vec<(StackLocation, Result<String, String>)> = Vec::new();
        let mut repo_of: HashMap<String, usize> = HashMap::new();
        for (i, (repo, head)) in opts.repositories.iter().zip(&heads).enumerate() {
            let Some(h) = head.borrow().clone() else {
                continue;
            };
            for (loc, name) in follow::locations(repo, &h) {
                repo_of.insert(loc.key(), i);
                all.push((loc, name));
            }
        }
        let stacks: BTreeMap<String, StackLocation> =
            all.iter().map(|(l, _)| (l.key(), l.clone())).collect();
        board.set_stacks(all.into_iter().map(|(l, n)| (l.key(), (l, n))).collect());

        let busy: HashSet<String> = workers
            .iter()
            .filter(|(_, w)| w.busy.load(Ordering::SeqCst))
            .map(|(k, _)| k.clone())
            .collect();
        if !namespace_ready {
            namespace_ready =
                plimsoll_syncer::sync::ensure_namespace(&client, &sync.journal_namespace)
                    .await
                    .is_ok();
        }
        let round = shard.round(&stacks, &busy, &board.reports()).await;
        let failed = match round {
            Ok((release, view)) => {
                board.set_shard(&view, None);
                metrics.shard(shard.owned.len(), view.peers.len());
                for key in release {
                    let gone = !stacks.contains_key(&key);
                    match workers.get_mut(&key) {
                        Some(w) => {
                            if w.leaving.is_none() {
                                tracing::info!(key, gone, "giving the stack up: stopping its work at the next safe boundary");
                                w.stop.request();
                                w.leaving = Some(gone);
                            }
                        }
                        None => shard.give_up(&key, gone).await,
                    }
                }
                false
            }
            Err(e) => {
                let why = format!("{e}");
                tracing::error!("cannot share stacks through leases: {why}");
                board.set_shard(&shard::ShardView::default(), Some(why));
                true
            }
        };
        // Workers that ended: a given-up stack's lease goes back.
        let ended: Vec<String> = workers
            .iter()
            .filter(|(_, w)| w.task.is_finished())
            .map(|(k, _)| k.clone())
            .collect();
        for key in ended {
            if let Some(w) = workers.remove(&key) {
                if let Some(gone) = w.leaving {
                    shard.give_up(&key, gone).await;
                }
                board.forget(&key);
            }
        }
        // Stacks lost to another replica: stop their work.
        for (key, w) in workers.iter_mut() {
            if !shard.owned.contains_key(key) && w.leaving.is_none() {
                w.stop.request();
                w.leaving = Some(false);
            }
        }
        // Stacks taken: start their work.
        if !stop.is_requested() {
            for (key, owned) in &shard.owned {
                if workers.contains_key(key) {
                    continue;
                }
                let Some(&i) = repo_of.get(key) else { continue };
                let repo = &opts.repositories[i];
                let worker_stop = Stop::default();
                let busy = Arc::new(AtomicBool::new(false));
                let worker = worker::Worker {
                    key: key.clone(),
                    location: owned.location.clone(),
                    source: StackSource {
                        repo: repo.upstream.local_path().to_path_buf(),
                        stack_file: owned.location.file.clone(),
                        set: repo.set.clone(),
                        credentials: credentials.clone(),
                    },
                    head: heads[i].clone(),
                    heads: fleet_heads.clone(),
                    sync: sync.clone(),
                    client: client.clone(),
                    metrics: metrics.clone(),
                    board: board.clone(),
                    interval: opts.interval,
                    self_heal: opts.self_heal,
                    owner: owned.check.clone(),
                    stop: worker_stop.clone(),
                    busy: busy.clone(),
                    sync_slots: sync_slots.clone(),
                    load_slots: load_slots.clone(),
                };
                workers.insert(
                    key.clone(),
                    StackTask {
                        stop: worker_stop,
                        busy,
                        task: tokio::spawn(worker.run()),
                        leaving: None,
                    },
                );
            }
        }
        if stop.is_requested() {
            break;
        }
        failures = if failed { failures + 1 } else { 0 };
        let wait = if failed {
            // Up to a round's period: leases held here expire otherwise.
            let wait =
                follow::retry_after(failures, shard.period()).max(Duration::from_millis(500));
            tracing::info!(
                "sharing stacks: retrying in {}s (failure {failures} in a row)",
                wait.as_secs()
            );
            wait
        } else {
            shard.period()
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = heads_changed.notified() => {
                // Let a burst of followers publish before looking.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            _ = stop.requested() => {}
        }
    }

    // A clean stop: each running sync stops at its next safe boundary,
    // then the stacks' leases go back so that peers take over at once.
    for w in workers.values() {
        w.stop.request();
    }
    for (key, w) in workers.drain() {
        let _ = w.task.await;
        board.forget(&key);
    }
    shard.leave().await;
    for f in followers {
        let _ = f.await;
    }
    for s in servers {
        s.abort();
    }
    drop(watchers);
    tracing::info!("stopped");
    Ok(())
}
