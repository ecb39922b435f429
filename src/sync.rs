//! `plimsoll sync`: plan a revision against the live cluster and execute
//! the plan under the stack's lease, journaled so that a killed sync
//! resumes. The daemon calls [`sync_once`] on every new commit.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ObjectMeta, PostParams};
use plimsoll_syncer::execute::{self, Executor, JournalLocation, Report, Settings};
use plimsoll_syncer::journal::Journal;
use plimsoll_syncer::plan::{self, Plan, PlanOptions};

use crate::desired::DesiredState;

/// Settings of one sync besides the desired state.
#[derive(Clone)]
pub struct SyncOptions {
    pub journal_namespace: String,
    pub strict: bool,
    pub dry_run: bool,
    pub settings: Settings,
    pub lease_duration: Duration,
    pub wait_for_lease: Option<Duration>,
    pub namespaces: Vec<String>,
}

/// How a sync ended (errors are `Err`).
pub enum SyncOutcome {
    NothingToDo,
    Refused(Plan),
    DryRun {
        plan_text: String,
    },
    Done {
        report: Report,
        resumed: bool,
        elapsed: Duration,
    },
    Stopped {
        report: Report,
    },
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

/// The namespaces to read: given ones, else those of the desired releases.
pub fn namespaces_of(opts: &SyncOptions, desired: &DesiredState) -> Vec<String> {
    if !opts.namespaces.is_empty() {
        return opts.namespaces.clone();
    }
    let mut ns: Vec<String> = desired
        .releases
        .iter()
        .map(|r| r.namespace.clone())
        .collect();
    ns.sort();
    ns.dedup();
    ns
}

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

/// Plans `desired` against the live cluster (or resumes the journal's
/// unfinished plan for the same desired state) and executes it.
pub async fn sync_once(
    client: &kube::Client,
    desired: &DesiredState,
    opts: &SyncOptions,
    stop: Arc<AtomicBool>,
    progress: Arc<dyn Fn(&str) + Send + Sync>,
) -> anyhow::Result<SyncOutcome> {
    let start = Instant::now();
    let journal_at = JournalLocation::for_stack(&opts.journal_namespace, &desired.stack_name);
    let lease = if opts.dry_run {
        None
    } else {
        ensure_namespace(client, &opts.journal_namespace).await?;
        Some(
            plimsoll_syncer::lease::acquire(
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
    let result = async {
        let previous = execute::load_journal(client, &journal_at).await?;
        let (mut journal, resumed) = match previous {
            Some(j) if j.resumes(&desired.digest) => {
                progress(&format!(
                    "resuming plan {} at {} ({} of {} steps done)",
                    &j.plan_digest[..12],
                    j.next_step().map(|s| s.id.as_str()).unwrap_or("the end"),
                    j.completed.len(),
                    j.steps.len()
                ));
                (j, true)
            }
            _ => {
                let observed = crate::observe_all(
                    client,
                    &namespaces_of(opts, desired),
                    &desired.patch_targets(),
                )
                .await?;
                let options = PlanOptions {
                    strict: opts.strict,
                    catalogs: desired.catalogs.clone(),
                };
                let plan = plan::plan(&desired.releases, &observed, &options);
                if !plan.refusals.is_empty() {
                    return Ok(SyncOutcome::Refused(plan));
                }
                if !plan.has_changes() {
                    return Ok(SyncOutcome::NothingToDo);
                }
                if opts.dry_run {
                    return Ok(SyncOutcome::DryRun {
                        plan_text: plan::to_text(&plan),
                    });
                }
                (
                    Journal::new(&plan, &desired.digest, desired.revision.as_deref()),
                    false,
                )
            }
        };
        if opts.dry_run {
            let mut text =
                String::from("An interrupted sync of this desired state would resume:\n");
            for s in journal
                .steps
                .iter()
                .filter(|s| !journal.completed.contains(&s.id))
            {
                text.push_str(&format!("  {}\n", s.id));
            }
            return Ok(SyncOutcome::DryRun { plan_text: text });
        }
        let lease_lost = lease.as_ref().map(|l| l.lost_flag()).unwrap_or_default();
        let lease_stale = lease.as_ref().map(|l| l.stale_flag()).unwrap_or_default();
        let executor = Executor {
            client: client.clone(),
            settings: opts.settings.clone(),
            sources: desired.sources.clone(),
            journal_at: journal_at.clone(),
            stop: stop.clone(),
            lease_lost: lease_lost.clone(),
            lease_stale,
            progress: progress.clone(),
        };
        let report = executor.run(&mut journal).await?;
        Ok(if report.stopped_before.is_some() {
            SyncOutcome::Stopped { report }
        } else {
            SyncOutcome::Done {
                report,
                resumed,
                elapsed: start.elapsed(),
            }
        })
    }
    .await;
    if let Some(l) = lease {
        l.release().await;
    }
    result
}

fn print_report(report: &Report) -> String {
    let executed: u32 = report.executed.values().sum();
    let kinds: Vec<String> = report
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
        report.skipped
    )
}

/// `plimsoll sync`.
pub fn cmd_sync(
    client_of: impl std::future::Future<Output = anyhow::Result<kube::Client>>,
    desired: DesiredState,
    opts: SyncOptions,
    yes: bool,
) -> anyhow::Result<ExitCode> {
    if !opts.dry_run && !yes && !std::io::stdin().is_terminal() {
        bail!(
            "sync changes the cluster: pass --yes when not attached to a terminal (or --dry-run)"
        );
    }
    let rt = crate::runtime()?;
    rt.block_on(async {
        let client = client_of.await?;
        if !opts.dry_run && !yes {
            // At a terminal: show the plan and ask.
            let observed = crate::observe_all(
                &client,
                &namespaces_of(&opts, &desired),
                &desired.patch_targets(),
            )
            .await?;
            let plan = plan::plan(
                &desired.releases,
                &observed,
                &PlanOptions {
                    strict: opts.strict,
                    catalogs: desired.catalogs.clone(),
                },
            );
            print!("{}", plan::to_text(&plan));
            if plan.refusals.is_empty() && plan.has_changes() {
                print!("Apply this plan? [y/N] ");
                std::io::stdout().flush()?;
                let mut answer = String::new();
                std::io::stdin().read_line(&mut answer)?;
                if !matches!(answer.trim(), "y" | "Y" | "yes") {
                    println!("Nothing changed.");
                    return Ok(ExitCode::SUCCESS);
                }
            }
        }
        let stop = Arc::new(AtomicBool::new(false));
        {
            let stop = stop.clone();
            tokio::spawn(async move {
                if stop_requested().await {
                    eprintln!("stop requested: finishing the current step");
                    stop.store(true, Ordering::SeqCst);
                }
            });
        }
        let progress: Arc<dyn Fn(&str) + Send + Sync> = Arc::new(|line: &str| {
            eprintln!("{line}");
        });
        match sync_once(&client, &desired, &opts, stop, progress).await? {
            SyncOutcome::NothingToDo => {
                println!("No changes: the cluster matches the desired state.");
                Ok(ExitCode::SUCCESS)
            }
            SyncOutcome::Refused(plan) => {
                print!("{}", plan::to_text(&plan));
                eprintln!("error: the plan is refused; nothing was changed");
                Ok(ExitCode::from(1))
            }
            SyncOutcome::DryRun { plan_text } => {
                print!("{plan_text}");
                println!("Dry run: nothing was changed.");
                Ok(ExitCode::SUCCESS)
            }
            SyncOutcome::Done {
                report,
                resumed,
                elapsed,
            } => {
                println!(
                    "Sync complete{} in {:.1}s: {}.",
                    if resumed { " (resumed)" } else { "" },
                    elapsed.as_secs_f64(),
                    print_report(&report)
                );
                Ok(ExitCode::SUCCESS)
            }
            SyncOutcome::Stopped { report } => {
                println!(
                    "Stopped before {} on request: {}. Run sync again to finish.",
                    report.stopped_before.as_deref().unwrap_or("?"),
                    print_report(&report)
                );
                Ok(ExitCode::from(3))
            }
        }
    })
}
