//! The `plimsoll` command: the command line (clap), dispatch, printing and
//! exit codes. The work is done by the crates: `plimsoll-renderer`
//! (render), `plimsoll-planner` (plan) and `plimsoll-syncer` (everything
//! that touches a repository's history, helm or a cluster).
//!
//! Start-up is kept cheap for the commands that need no cluster: no async
//! runtime, TLS or client is set up before a command asks for one.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use plimsoll_renderer::merge::MergeMode;
use plimsoll_syncer::client::ClusterOptions;
use plimsoll_syncer::execute::Settings;
use plimsoll_syncer::helm::helm_executable;
use plimsoll_syncer::source::StackSource;
use plimsoll_syncer::sync::SyncOptions;

mod cluster_cmd;
mod output;
mod render_cmd;

#[derive(Parser)]
#[command(
    name = "plimsoll",
    version,
    about = "Layered values rendering and safe transitions for Helm-deployed stateful platforms"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
// Parsed once per process: the size of a variant does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Merge values files exactly as `yq eval-all '. as $item ireduce ({}; . * $item)'` does.
    Merge {
        /// How sequences combine: replace (yq `*`), append (`*+`), by-index (`*d`).
        #[arg(long, default_value = "replace", value_parser = parse_mode)]
        mode: MergeMode,
        /// Layers, first to last.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Render every release of the stack file (plimsoll.yaml) into its values file.
    Render {
        #[command(flatten)]
        common: Common,
        /// Write outputs under this directory instead of the stack file's `output`.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Render in memory and exit 1 if the committed outputs or lock are stale.
        #[arg(long)]
        check: bool,
        /// Output format of the rendered values.
        #[arg(long, value_enum, default_value_t = Format::Yaml)]
        format: Format,
        /// Treat lint warnings as errors.
        #[arg(long)]
        strict: bool,
        /// Report keys that neither an earlier layer nor the chart's values.yaml defines.
        #[arg(long)]
        strict_keys: bool,
    },
    /// Write the live state the planner needs (Helm releases, StatefulSets,
    /// PVCs, StorageClasses, Deployments) to a file, for offline planning.
    Snapshot {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        cluster: Cluster,
        /// Output file (JSON); stdout when absent.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Plan the transition from the live state to the repository's desired state.
    Plan {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        cluster: Cluster,
        /// Plan against a snapshot file instead of the cluster.
        #[arg(long)]
        live: Option<PathBuf>,
        /// Plan the repository as it is at this git revision (read from the
        /// object database: no checkout; bare clones work).
        #[arg(long)]
        rev: Option<String>,
        /// Also show each release's rendered values changes since this
        /// revision, with the layer that caused each change.
        #[arg(long)]
        base: Option<String>,
        #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
        format: PlanFormat,
        /// Refuse a chart version bump mixed with value changes.
        #[arg(long)]
        strict: bool,
        /// The helm executable used for `helm template` (default: $PLIMSOLL_HELM, then `helm`).
        #[arg(long)]
        helm: Option<PathBuf>,
        /// Also save the plan, with digests of the desired and the observed
        /// state, for `sync --plan FILE` (docs/plan-schema.md).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Lines of context around each change in the manifest diff
        /// (helm-diff's `--context`; `--context` names the kubeconfig context).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(0..=1000))]
        diff_context: Option<u16>,
    },
    /// What the stack needs (pods' requests, storage per class) for the
    /// variables given; with --live SNAPSHOT or --cluster, beside what the
    /// cluster has free. Run it before choosing a sizing.
    Estimate {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        cluster: Cluster,
        /// Compare with a snapshot file.
        #[arg(long, conflicts_with = "cluster_read")]
        live: Option<PathBuf>,
        /// Compare with the live cluster (kubeconfig).
        #[arg(long = "cluster", id = "cluster_read")]
        cluster_read: bool,
        /// The repository at this git revision.
        #[arg(long)]
        rev: Option<String>,
        #[arg(long, value_enum, default_value_t = EstimateFormat::Text)]
        format: EstimateFormat,
        /// The helm executable used for `helm template` (default: $PLIMSOLL_HELM, then `helm`).
        #[arg(long)]
        helm: Option<PathBuf>,
    },
    /// Plan and execute: expand volumes, patch operator resources, re-create
    /// StatefulSets (orphan delete), helm upgrade, wait until ready; journaled
    /// in the cluster so that an interrupted sync resumes.
    Sync {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        cluster: Cluster,
        #[command(flatten)]
        sync: SyncArgs,
        /// Sync the repository as it is at this git revision (default: HEAD
        /// when --repo is a git repository, else the working tree).
        #[arg(long)]
        rev: Option<String>,
        /// Sync the working tree even in a git repository (uncommitted files).
        #[arg(long, conflicts_with = "rev")]
        working_tree: bool,
        /// Print what would be done; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Do not ask; required when not attached to a terminal.
        #[arg(long, short = 'y')]
        yes: bool,
        /// Run exactly the plan saved by `plan --out FILE`, or nothing: the
        /// repository and the cluster must be as they were planned.
        #[arg(long, value_name = "FILE")]
        plan: Option<PathBuf>,
    },
    /// Follow a branch of the deployment repository (or several
    /// repositories, --config) and keep the cluster at it, stack by stack:
    /// sync new commits, report drift (and heal it with --self-heal); share
    /// the stacks with the group's other replicas through Leases; serve
    /// /metrics, /healthz, /readyz, POST /hook and a status page.
    Daemon {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        cluster: Cluster,
        #[command(flatten)]
        sync: SyncArgs,
        /// Fetch this remote repository (into --mirror) instead of following
        /// the local repository --repo.
        #[arg(long, conflicts_with = "config")]
        url: Option<String>,
        /// Bare mirror for --url (default: ~/.cache/plimsoll/mirrors/ID).
        #[arg(long, conflicts_with = "config")]
        mirror: Option<PathBuf>,
        /// The tracked branch: only its commits are synced.
        #[arg(long, default_value = "main", conflicts_with = "config")]
        branch: String,
        /// Stack files to follow in the repository, a pattern (`*` and `?`
        /// within a path segment, `**` across), repeatable; e.g.
        /// 'stacks/*/plimsoll.yaml' (default: the --stack file).
        #[arg(long = "stacks", value_name = "PATTERN", conflicts_with = "config")]
        stacks: Vec<String>,
        /// Follow the repositories listed in this YAML file instead
        /// (`repositories:` with url or path, branch, stacks, set).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Seconds between fetches and drift checks (jittered by 10 %).
        #[arg(long, default_value_t = 60)]
        interval: u64,
        /// Address of the HTTP endpoint (/metrics, /healthz, /readyz, POST /hook).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Address of the read-only status page (HTML at /, JSON at
        /// /status.json); this machine only by default.
        #[arg(long, value_name = "ADDR")]
        status_listen: Option<std::net::SocketAddr>,
        /// Do not serve the status page.
        #[arg(long, conflicts_with_all = ["status_listen", "status_token_file"])]
        no_status_page: bool,
        /// File holding a token the status page then requires (`Authorization:
        /// Bearer TOKEN`, or TOKEN as the password a browser asks for).
        #[arg(long, value_name = "FILE")]
        status_token_file: Option<PathBuf>,
        /// This replica's name among its peers; unique per process (default:
        /// HOST-PID).
        #[arg(long)]
        identity: Option<String>,
        /// Replicas of one group share the group's stacks.
        #[arg(long, default_value = "default")]
        group: String,
        /// Stacks this replica syncs at once, at most (each stack's releases
        /// of a stage still run --concurrency at once); the others wait.
        #[arg(long, default_value_t = 4, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
        max_syncs: u16,
        /// Sync drift back to the last synced commit.
        #[arg(long)]
        self_heal: bool,
        /// File holding the webhook secret: POST /hook then requires a valid
        /// X-Hub-Signature-256 (HMAC-SHA256 of the body).
        #[arg(long)]
        webhook_secret_file: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// Show a key's final value, the layer that set it and what it overrode.
    Explain {
        #[command(flatten)]
        common: Common,
        /// Release name.
        release: String,
        /// Key path, e.g. `mariadb-galera.persistence.size` or `a."dotted.key"[0]`.
        path: String,
    },
}

#[derive(clap::Args, Clone)]
pub struct Common {
    /// The deployment repository (holds plimsoll.yaml).
    #[arg(long, default_value = ".")]
    repo: PathBuf,
    /// The stack file, relative to --repo (one of several stacks, e.g.
    /// stacks/site-a/plimsoll.yaml); paths inside it stay relative to the
    /// repository's root.
    #[arg(long = "stack", value_name = "FILE", default_value = plimsoll_renderer::STACK_FILE, value_parser = parse_stack_file)]
    stack_file: String,
    /// Set a stack variable, e.g. --set segment=l.
    #[arg(long = "set", value_name = "VAR=VALUE", value_parser = parse_assignment)]
    set: Vec<(String, String)>,
    /// Directory of chart repository credentials files (default:
    /// $PLIMSOLL_CREDENTIALS_DIR, then ~/.config/plimsoll/credentials).
    #[arg(long, value_name = "DIR")]
    credentials_dir: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct Cluster {
    /// Kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Kubeconfig context.
    #[arg(long)]
    context: Option<String>,
    /// Namespaces to read (default: the namespaces of the stack's releases).
    #[arg(long = "namespace", short = 'n')]
    namespaces: Vec<String>,
}

#[derive(clap::Args, Clone)]
pub struct SyncArgs {
    /// Refuse a chart version bump mixed with value changes.
    #[arg(long)]
    strict: bool,
    /// The helm executable (default: $PLIMSOLL_HELM, then `helm`).
    #[arg(long)]
    helm: Option<PathBuf>,
    /// Namespace of the journal ConfigMap and the Lease.
    #[arg(long, default_value = "plimsoll")]
    journal_namespace: String,
    /// Wait up to this many seconds for another syncer's lease instead of exiting.
    #[arg(long, value_name = "SECONDS")]
    wait_for_lease: Option<u64>,
    /// Seconds the stack's Lease lasts without a renewal; another syncer
    /// takes it over after seeing it unchanged this long.
    #[arg(long, default_value_t = 15, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(2..=3600))]
    lease_duration: u64,
    /// Seconds to wait for each volume expansion.
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    expansion_timeout: u64,
    /// Releases of one stage synced at once, at most (each release's own
    /// steps in order; stages one after the other).
    #[arg(long, default_value_t = 4, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    concurrency: u16,
    /// Seconds helm may take (`helm upgrade --wait --timeout`).
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    helm_timeout: u64,
    /// Seconds to wait until a release's StatefulSets and Deployments are ready.
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    ready_timeout: u64,
}

impl SyncArgs {
    fn options(&self, cluster: &Cluster, dry_run: bool) -> SyncOptions {
        let namespaces = cluster.namespaces.clone();
        SyncOptions {
            journal_namespace: self.journal_namespace.clone(),
            strict: self.strict,
            dry_run,
            settings: Settings {
                helm: helm_executable(self.helm.as_deref()),
                cluster: cluster.options(),
                concurrency: usize::from(self.concurrency),
                expansion_timeout: Duration::from_secs(self.expansion_timeout),
                helm_timeout: Duration::from_secs(self.helm_timeout),
                ready_timeout: Duration::from_secs(self.ready_timeout),
                poll: Duration::from_millis(500),
            },
            lease_duration: Duration::from_secs(self.lease_duration),
            wait_for_lease: self.wait_for_lease.map(Duration::from_secs),
            namespaces,
            saved: None,
            holder: plimsoll_syncer::sync::holder_identity(),
            tracker: None,
        }
    }
}

impl Common {
    fn source(&self) -> StackSource {
        StackSource {
            repo: self.repo.clone(),
            stack_file: self.stack_file.clone(),
            set: self.set.clone(),
            credentials: plimsoll_syncer::charts::CredentialStore::with_dir(
                self.credentials_dir.as_deref(),
            ),
        }
    }
}

impl Cluster {
    fn options(&self) -> ClusterOptions {
        ClusterOptions {
            kubeconfig: self.kubeconfig.clone(),
            context: self.context.clone(),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

fn init_logging(format: LogFormat) {
    let builder = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_writer(std::io::stderr)
        .with_ansi(false);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EstimateFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    Text,
    Markdown,
    Json,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Yaml,
    Json,
}

fn parse_mode(s: &str) -> Result<MergeMode, String> {
    MergeMode::parse(s)
        .ok_or_else(|| format!("unknown merge mode {s:?} (replace, append, by-index)"))
}

/// A stack file path inside the repository, in one spelling.
fn parse_stack_file(s: &str) -> Result<String, String> {
    plimsoll_renderer::render::normalize(s)
        .filter(|p| !p.starts_with('-'))
        .ok_or_else(|| format!("{s:?} must be a relative path inside the repository"))
}

fn parse_assignment(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected VAR=VALUE, got {s:?}")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The work runs on a thread with the stack the deepest allowed input
    // needs (the main thread has 8 MiB).
    let worker = std::thread::Builder::new()
        .name("plimsoll".into())
        .stack_size(plimsoll_yaml::STACK_BYTES)
        .spawn(move || run(cli));
    let result = match worker.map(|w| w.join()) {
        Ok(Ok(result)) => result,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(e) => Err(anyhow::anyhow!("cannot start the worker thread: {e}")),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            if is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain()
        .filter_map(|e| e.downcast_ref::<std::io::Error>())
        .any(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Merge { mode, files } => render_cmd::merge(mode, &files),
        Command::Render {
            common,
            out,
            check,
            format,
            strict,
            strict_keys,
        } => render_cmd::render(&common, out.as_deref(), check, format, strict, strict_keys),
        Command::Explain {
            common,
            release,
            path,
        } => render_cmd::explain(&common, &release, &path),
        Command::Snapshot {
            common,
            cluster,
            out,
        } => cluster_cmd::snapshot(&common, &cluster, out.as_deref()),
        Command::Estimate {
            common,
            cluster,
            live,
            cluster_read,
            rev,
            format,
            helm,
        } => cluster_cmd::estimate(
            &common,
            &cluster,
            (live.as_deref(), cluster_read),
            rev.as_deref(),
            matches!(format, EstimateFormat::Json),
            helm.as_deref(),
        ),
        Command::Plan {
            common,
            cluster,
            live,
            rev,
            base,
            format,
            strict,
            helm,
            out,
            diff_context,
        } => cluster_cmd::plan(
            &common,
            &cluster,
            (live.as_deref(), out.as_deref()),
            (rev.as_deref(), base.as_deref()),
            (format, diff_context.map(usize::from)),
            strict,
            helm.as_deref(),
        ),
        Command::Sync {
            common,
            cluster,
            sync,
            rev,
            working_tree,
            dry_run,
            yes,
            plan,
        } => cluster_cmd::sync(
            &common,
            &cluster,
            &sync,
            (rev, working_tree),
            (dry_run, yes),
            plan.as_deref(),
        ),
        Command::Daemon {
            common,
            cluster,
            sync,
            url,
            mirror,
            branch,
            stacks,
            config,
            interval,
            listen,
            status_listen,
            no_status_page,
            status_token_file,
            identity,
            group,
            max_syncs,
            self_heal,
            webhook_secret_file,
            log_format,
        } => {
            init_logging(log_format);
            cluster_cmd::daemon(
                &common,
                &cluster,
                &sync,
                cluster_cmd::DaemonArgs {
                    url,
                    mirror,
                    branch,
                    stacks,
                    config,
                    interval,
                    listen,
                    status_listen: (!no_status_page).then_some(status_listen),
                    status_token_file,
                    identity,
                    group,
                    max_syncs: usize::from(max_syncs),
                    self_heal,
                    webhook_secret_file,
                },
            )
        }
    }
}
