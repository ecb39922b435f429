//! The commands that read or change a cluster: `snapshot`, `plan`, `sync`
//! and `daemon`. Each builds its async runtime and client only here.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use plimsoll_daemon::{DaemonOptions, StatusOptions, Upstream};
use plimsoll_planner::plan;
use plimsoll_planner::redact::Scrubber;
use plimsoll_planner::state::{ObservedState, ResourceRef};
use plimsoll_syncer::desired;
use plimsoll_syncer::execute::{Progress, RunEnd};
use plimsoll_syncer::git::Revision;
use plimsoll_syncer::helm::helm_executable;
use plimsoll_syncer::sync::{self, Preparation, Stop, SyncOptions, SyncOutcome};

use crate::output::{self, Output};
use crate::{Cluster, Common, PlanFormat, SyncArgs};

/// A single-threaded runtime: enough for one command's requests.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .thread_stack_size(plimsoll_yaml::STACK_BYTES)
        .enable_all()
        .build()?)
}

/// The namespaces to read: given ones, else those of the stack's releases.
fn namespaces(common: &Common, cluster: &Cluster) -> anyhow::Result<Vec<String>> {
    if !cluster.namespaces.is_empty() {
        return Ok(cluster.namespaces.clone());
    }
    common.source().release_namespaces()
}

fn observe_cluster(
    common: &Common,
    cluster: &Cluster,
    targets: &[ResourceRef],
) -> anyhow::Result<ObservedState> {
    let ns = namespaces(common, cluster)?;
    runtime()?.block_on(async {
        let client = plimsoll_syncer::client::connect(&cluster.options()).await?;
        Ok(plimsoll_syncer::observe::observe(&client, &ns, targets).await?)
    })
}

pub fn snapshot(
    common: &Common,
    cluster: &Cluster,
    out: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    // The resources the stack declares patches for are part of the snapshot.
    let targets = match common.source().patch_targets() {
        Ok(t) => t,
        Err(_) if !cluster.namespaces.is_empty() => Vec::new(),
        Err(e) => return Err(e),
    };
    let observed = observe_cluster(common, cluster, &targets)?;
    let text = serde_json::to_string_pretty(&observed)? + "\n";
    match out {
        Some(path) => output::write_all_atomically(
            &[Output {
                path: path.to_path_buf(),
                text,
            }],
            None,
        )?,
        None => std::io::stdout().write_all(text.as_bytes())?,
    }
    Ok(ExitCode::SUCCESS)
}

pub fn estimate(
    common: &Common,
    cluster: &Cluster,
    (live, read_cluster): (Option<&Path>, bool),
    rev: Option<&str>,
    json: bool,
    helm: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let helm = helm_executable(helm);
    let desired = desired::load(&common.source(), rev, &helm)?;
    let observed: Option<plimsoll_planner::state::ObservedState> = match (live, read_cluster) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            Some(
                serde_json::from_str(&text)
                    .with_context(|| format!("{} is not a Plimsoll snapshot", path.display()))?,
            )
        }
        (None, true) => {
            let ns = namespaces(common, cluster)?;
            Some(runtime()?.block_on(async {
                let client = plimsoll_syncer::client::connect(&cluster.options()).await?;
                sync::observe_desired(&client, &desired, &ns).await
            })?)
        }
        (None, false) => None,
    };
    let e = plimsoll_planner::capacity::estimate(
        &desired.releases,
        observed.as_ref(),
        &desired.storage_pools,
    );
    let text = if json {
        serde_json::to_string_pretty(&e)? + "\n"
    } else {
        e.to_text()
    };
    std::io::stdout().write_all(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

pub fn plan(
    common: &Common,
    cluster: &Cluster,
    (live, out): (Option<&Path>, Option<&Path>),
    (rev, base): (Option<&str>, Option<&str>),
    (format, context): (PlanFormat, Option<usize>),
    strict: bool,
    helm: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let helm = helm_executable(helm);
    let source = common.source();
    let desired = desired::load(&source, rev, &helm)?;
    let observed = match live {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            serde_json::from_str(&text)
                .with_context(|| format!("{} is not a Plimsoll snapshot", path.display()))?
        }
        None => {
            let ns = namespaces(common, cluster)?;
            runtime()?.block_on(async {
                let client = plimsoll_syncer::client::connect(&cluster.options()).await?;
                sync::observe_desired(&client, &desired, &ns).await
            })?
        }
    };
    let mut options = desired.plan_options(strict);
    options.manifest_context = context;
    let mut plan = plan::plan(&desired.releases, &observed, &options);
    if let Some(b) = base {
        let base_rev = Revision::open(&common.repo, b)?;
        let (_, base_rendered) = source.render_revision(&base_rev)?;
        plan.values_since_base = desired::values_since_base(&desired, &base_rendered, b)?;
    }
    let text = match format {
        PlanFormat::Text => plan::to_text(&plan),
        PlanFormat::Markdown => plan::to_markdown(&plan),
        PlanFormat::Json => plan::to_json(&plan),
    };
    // Structure redacts by key; the desired state's own secret strings go
    // from whatever text remains (refusal reasons, warnings).
    let text = desired.scrubber.scrub(&text);
    if let Some(path) = out {
        let saved = plan::SavedPlan {
            format: plan::SAVED_PLAN_FORMAT.to_string(),
            stack: desired.stack_name.clone(),
            revision: desired.revision.clone(),
            desired_digest: desired.digest.clone(),
            observed_digest: plan::observed_digest(&observed),
            plan: plan.clone(),
        };
        let text = serde_json::to_string_pretty(&saved)? + "\n";
        output::write_all_atomically(
            &[Output {
                path: path.to_path_buf(),
                text,
            }],
            None,
        )?;
    }
    std::io::stdout().write_all(text.as_bytes())?;
    Ok(ExitCode::from(plan.exit_code()))
}

/// Asks at the terminal (on a blocking thread: the lease keeps being
/// renewed meanwhile).
async fn confirm(question: String) -> anyhow::Result<bool> {
    tokio::task::spawn_blocking(move || -> anyhow::Result<bool> {
        print!("{question} [y/N] ");
        std::io::stdout().flush()?;
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
    })
    .await?
}

pub fn sync(
    common: &Common,
    cluster: &Cluster,
    args: &SyncArgs,
    (rev, working_tree): (Option<String>, bool),
    (dry_run, yes): (bool, bool),
    saved: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let saved = match saved {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let s: plan::SavedPlan = serde_json::from_str(&text).with_context(|| {
                format!(
                    "{} is not a plan saved by `plimsoll plan --out`",
                    path.display()
                )
            })?;
            if s.format != plan::SAVED_PLAN_FORMAT {
                bail!(
                    "{} is a {:?} file, not {}",
                    path.display(),
                    s.format,
                    plan::SAVED_PLAN_FORMAT
                );
            }
            Some(s)
        }
    };
    let ask = !dry_run && !yes;
    if ask && !std::io::stdin().is_terminal() {
        bail!(
            "sync changes the cluster: pass --yes when not attached to a terminal (or --dry-run)"
        );
    }
    let helm = helm_executable(args.helm.as_deref());
    // What is committed is what is synced, as the daemon does.
    let rev = rev.or_else(|| {
        (!working_tree && Revision::open(&common.repo, "HEAD").is_ok()).then(|| "HEAD".to_string())
    });
    let desired = desired::load(&common.source(), rev.as_deref(), &helm)?;
    match &desired.revision {
        Some(commit) => eprintln!("syncing {} (commit {commit})", rev.as_deref().unwrap_or("")),
        None => eprintln!("syncing the working tree of {}", common.repo.display()),
    }
    let mut opts = args.options(cluster, dry_run);
    if let Some(s) = saved {
        if s.stack != desired.stack_name {
            bail!(
                "the saved plan is of stack {:?}, not {:?}; nothing was changed",
                s.stack,
                desired.stack_name
            );
        }
        opts.saved = Some(s);
    }
    runtime()?.block_on(async {
        let client = plimsoll_syncer::client::connect(&cluster.options()).await?;
        let stop = Stop::default();
        stop.on_signals(|| eprintln!("stop requested: finishing the current step"));
        let scrubber = desired.scrubber.clone();
        let progress: Progress = Arc::new(move |line: &str| eprintln!("{}", scrubber.scrub(line)));
        let outcome = match sync::prepare(&client, &desired, &opts, &progress).await? {
            Preparation::Finished(outcome) => outcome,
            Preparation::Ready(prepared) => {
                let approved = if ask {
                    if prepared.resumes() {
                        println!("An interrupted sync of this desired state resumes with:");
                    }
                    print!(
                        "{}",
                        desired.scrubber.scrub(&plan::to_text(prepared.plan()))
                    );
                    confirm("Apply this plan?".to_string()).await?
                } else {
                    true
                };
                if approved {
                    // What was shown is what runs: a fresh plan that differs
                    // from it stops the sync before any change.
                    prepared
                        .execute(&client, &desired, &opts, stop.flag(), progress, ask)
                        .await?
                } else {
                    prepared.abandon().await;
                    SyncOutcome::Declined
                }
            }
        };
        Ok(report(outcome, &desired.scrubber))
    })
}

/// Prints how a sync ended; the exit code.
fn report(outcome: SyncOutcome, scrubber: &Scrubber) -> ExitCode {
    // Every line through the scrubber: errors quote what the cluster or
    // helm said, which may echo a value.
    macro_rules! println {
        ($($t:tt)*) => { std::println!("{}", scrubber.scrub(&format!($($t)*))) };
    }
    macro_rules! eprintln {
        ($($t:tt)*) => { std::eprintln!("{}", scrubber.scrub(&format!($($t)*))) };
    }
    macro_rules! print {
        ($($t:tt)*) => { std::print!("{}", scrubber.scrub(&format!($($t)*))) };
    }
    match outcome {
        SyncOutcome::NothingToDo => {
            println!("No changes: the cluster matches the desired state.");
            ExitCode::SUCCESS
        }
        SyncOutcome::Declined => {
            println!("Nothing changed.");
            ExitCode::SUCCESS
        }
        SyncOutcome::Refused(plan) => {
            print!("{}", plan::to_text(&plan));
            eprintln!("error: the plan is refused; nothing was changed");
            ExitCode::from(1)
        }
        SyncOutcome::StateChanged { now, .. } => {
            eprintln!(
                "error: the cluster changed since the plan was shown; nothing was changed. \
                 The plan now is:"
            );
            print!("{}", plan::to_text(&now));
            eprintln!("Run sync again to review it.");
            ExitCode::from(1)
        }
        SyncOutcome::SavedPlanOutdated { why } => {
            eprintln!(
                "error: the saved plan no longer applies: {why}; nothing was changed. Plan again and review it."
            );
            ExitCode::from(1)
        }
        SyncOutcome::DryRun { plan_text } => {
            print!("{plan_text}");
            println!("Dry run: nothing was changed.");
            ExitCode::SUCCESS
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
                report.summary()
            );
            ExitCode::SUCCESS
        }
        SyncOutcome::Stopped { report } => {
            println!(
                "Stopped before {} on request: {}. Run sync again to finish.",
                report.stopped_before().unwrap_or("?"),
                report.summary()
            );
            ExitCode::from(3)
        }
        SyncOutcome::Failed { report } => {
            if let RunEnd::Failed { error, .. } = &report.end {
                eprintln!("error: {error}");
            }
            eprintln!("({} before the failure)", report.summary());
            ExitCode::from(1)
        }
    }
}

/// The daemon's own flags.
pub struct DaemonArgs {
    pub url: Option<String>,
    pub mirror: Option<PathBuf>,
    pub branch: String,
    pub stacks: Vec<String>,
    pub config: Option<PathBuf>,
    pub interval: u64,
    pub listen: Option<std::net::SocketAddr>,
    /// `None`: no status page; `Some(None)`: the default address.
    pub status_listen: Option<Option<std::net::SocketAddr>>,
    pub status_token_file: Option<PathBuf>,
    pub identity: Option<String>,
    pub group: String,
    pub max_syncs: usize,
    pub self_heal: bool,
    pub webhook_secret_file: Option<PathBuf>,
}

/// A secret read from a file (trimmed), never from the command line.
fn secret_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path)
        .map(|b| b.trim_ascii().to_vec())
        .with_context(|| format!("cannot read {}", path.display()))
}

pub fn daemon(
    common: &Common,
    cluster: &Cluster,
    sync: &SyncArgs,
    args: DaemonArgs,
) -> anyhow::Result<ExitCode> {
    use plimsoll_daemon::config;
    let repositories = match &args.config {
        Some(path) => {
            let bytes = plimsoll_syncer::source::read_input(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            config::parse_config(&path.display().to_string(), &bytes)?
        }
        None => {
            let upstream = match args.url {
                Some(url) if url.starts_with('-') => bail!("--url {url:?} must not start with '-'"),
                Some(url) => Upstream::remote(url, args.mirror),
                None => Upstream::Local(common.repo.clone()),
            };
            config::check_branch(&args.branch).map_err(anyhow::Error::msg)?;
            let stacks = if args.stacks.is_empty() {
                vec![common.stack_file.clone()]
            } else {
                args.stacks
            };
            for p in &stacks {
                plimsoll_daemon::discover::check_pattern(p).map_err(anyhow::Error::msg)?;
            }
            vec![config::Repository {
                upstream,
                branch: args.branch,
                stacks,
                set: common.set.clone(),
            }]
        }
    };
    let identity = args
        .identity
        .unwrap_or_else(plimsoll_syncer::sync::holder_identity);
    config::check_identity(&identity).map_err(anyhow::Error::msg)?;
    config::check_group(&args.group).map_err(anyhow::Error::msg)?;
    let webhook_secret = args
        .webhook_secret_file
        .as_deref()
        .map(secret_file)
        .transpose()?;
    let status = match args.status_listen {
        None => None,
        Some(listen) => {
            let token = args
                .status_token_file
                .as_deref()
                .map(|p| {
                    let t = String::from_utf8(secret_file(p)?)
                        .with_context(|| format!("{} must hold text", p.display()))?;
                    if t.is_empty() {
                        bail!("{} is empty", p.display());
                    }
                    Ok(t)
                })
                .transpose()?;
            Some(StatusOptions {
                listen: listen.unwrap_or_else(|| {
                    config::DEFAULT_STATUS_LISTEN
                        .parse()
                        .expect("a socket address")
                }),
                token,
                explicit: listen.is_some(),
            })
        }
    };
    let opts = DaemonOptions {
        repositories,
        interval: Duration::from_secs(args.interval.max(1)),
        listen: args.listen,
        status,
        self_heal: args.self_heal,
        webhook_secret,
        credentials: common.source().credentials,
        identity,
        group: args.group,
        max_syncs: args.max_syncs,
    };
    let sync: SyncOptions = sync.options(cluster, false);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        // Blocking threads load commits: deep YAML needs the stack.
        .thread_stack_size(plimsoll_yaml::STACK_BYTES)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let client = plimsoll_syncer::client::connect(&cluster.options()).await?;
        let stop = Stop::default();
        stop.on_signals(|| tracing::info!("stop requested: stopping at the next safe boundary"));
        plimsoll_daemon::run(opts, client, sync, stop, |_| {}).await
    })?;
    Ok(ExitCode::SUCCESS)
}
